"""/inpaint through the Discord stub, with the real engine (and a tiny CLIPSeg) on tiny models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.jobs.inputs import prepare_inputs
from bot.store.models import JobKind, JobStatus
from engine.images.overlay import outline_mask
from engine.settings import EngineSettings
from engine.tasks.text_mask import TextMasker
from tests.bot.e2e.harness import CHANNEL, png_parameters
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png
from tests.bot.pictures import (
    box_mask,
    decompression_bomb,
    encode,
    png_header_only,
    scene,
    with_hole,
)
from tests.discord_stub import CallbackType

FAST = {"steps": 1}


@pytest.fixture
def text_masks(monkeypatch: pytest.MonkeyPatch, tiny_clipseg: Path) -> Path:
    """The engine process reads its settings from the environment it inherits."""
    monkeypatch.setenv("ENGINE_TEXT_MASK_MODEL", str(tiny_clipseg))
    return tiny_clipseg


async def inpaint(stub, user, *, prompt="a red kite", channel=CHANNEL, files=None, **options):
    return await stub.invoke_slash(
        "inpaint",
        {"prompt": prompt, **FAST, **options},
        user=user,
        channel=channel,
        attachments=files,
    )


def attached(name: str, data: bytes, content_type: str = "image/png") -> tuple[str, bytes, str]:
    return (name, data, content_type)


def pixels_of(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def stored_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_each_mask_source_repaints_and_shows_the_area_outlined(harness, text_masks):
    picture = scene()
    jpeg = encode(picture, "JPEG", quality=95)
    mask = encode(box_mask((192, 128), (96, 0, 191, 63)))  # same shape, twice the size
    holed = encode(with_hole(picture, (0, 0, 40, 63)), "WEBP", lossless=True)
    cases = [
        (
            "a mask picture",
            {"image": attached("photo.jpg", jpeg, "image/jpeg"), "mask": attached("m.png", mask)},
            {},
            prepare_inputs(jpeg, mask, None),
        ),
        (
            "transparency",
            {"image": attached("holed.webp", holed, "image/webp")},
            {},
            prepare_inputs(holed, None, None),
        ),
        (
            "words",
            {"image": attached("scene.png", encode(picture))},
            {"mask_prompt": "the sky"},
            prepare_inputs(encode(picture), None, "the sky"),
        ),
    ]
    # What CLIPSeg makes of the words, computed here the way the engine does it.
    words_image = cases[2][3].image
    masker = TextMasker(
        EngineSettings(_env_file=None, device="cpu", text_mask_model=str(text_masks))
    )
    words_mask = masker.mask(words_image, "the sky")
    assert 0 < np.asarray(words_mask).mean() < 255  # a real part of the picture

    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ada")
        for job_id, (source, files, options, fitted) in enumerate(cases, 1):
            handle = await inpaint(stub, student, files=files, seed=7, **options)
            response = await handle.wait_for_response()
            assert response.response_type is CallbackType.DEFERRED_CHANNEL_MESSAGE, source
            result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

            job = await bot.repo.get_job(job_id)
            assert job.status is JobStatus.DONE and job.kind is JobKind.INPAINT, source
            assert (job.width, job.height) == (768, 512), source  # 96×64 fitted to 512 px
            names = [a.filename for a in result.png_attachments]
            assert names == [f"job{job_id}_7.png", "mask_outline.png"], source
            repainted, outline = result.png_attachments
            assert repainted.image_size == outline.image_size == (768, 512), source
            assert "Size: 768x512" in png_parameters(repainted.data), source
            assert "Denoising strength: 1.0" in png_parameters(repainted.data), source
            assert "the repainted area outlined" in result.content, source

            # The inputs are stored by content hash, exactly as the engine used them.
            inputs = harness.settings.storage.input_dir
            stored = np.asarray(Image.open(inputs / job.image_ref))
            assert np.array_equal(stored, np.asarray(fitted.image)), source
            mask_used = fitted.mask if fitted.mask is not None else words_mask
            if source == "words":
                assert job.mask_ref is None and job.mask_prompt == "the sky"
                assert "found from the words `the sky`" in result.content
            else:
                assert job.mask_prompt is None
                assert np.array_equal(np.asarray(Image.open(inputs / job.mask_ref)), mask_used)
            # The outline shows that very mask on the fitted upload.
            expected = np.asarray(outline_mask(fitted.image, mask_used))
            assert np.array_equal(pixels_of(outline.data), expected), source


async def test_bad_inputs_are_refused_privately_and_nothing_is_stored(harness):
    picture = encode(scene())
    mask = encode(box_mask((96, 64), (0, 0, 30, 30)))
    holed = encode(with_hole(scene(), (0, 0, 20, 20)))
    big = encode(scene()) + b"\0" * (21 * 1024 * 1024)
    cases = [
        (
            {"image": attached("a.gif", encode(scene(), "GIF"), "image/gif")},
            {},
            "PNG, JPEG or WebP",
        ),
        ({"image": attached("a.png", b"plain text")}, {}, "must be a PNG, JPEG or WebP picture"),
        ({"image": attached("big.png", big)}, {}, "The image is 21.1 MB; the most is 20 MB."),
        (
            {"image": attached("bomb.png", decompression_bomb())},
            {},
            "The image is 9000×9000 pixels; the most is 16 megapixels.",
        ),
        (
            {"image": attached("huge.png", png_header_only(30_000, 30_000))},
            {},
            "The image is 30000×30000 pixels; the most is 16 megapixels.",
        ),
        ({"image": attached("t.png", encode(scene((40, 30))))}, {}, "at least 64 on each side"),
        ({"image": attached("cut.png", picture[:300])}, {}, "could not be read"),
        (
            {"image": attached("thin.png", encode(scene((2000, 100))))},
            {"mask_prompt": "the sky"},
            "The image is 2000×100 pixels, too long and thin",
        ),
        (
            {
                "image": attached("a.png", picture),
                "mask": attached("m.png", encode(scene((100, 100)))),
            },
            {},
            "their shapes differ",
        ),
        (
            {
                "image": attached("a.png", picture),
                "mask": attached("m.png", encode(scene(), "GIF")),
            },
            {},
            "The mask must be a PNG, JPEG or WebP picture",
        ),
        (
            {
                "image": attached("a.png", picture),
                "mask": attached("m.png", encode(Image.new("L", (96, 64)))),
            },
            {},
            "The mask is all black",
        ),
        ({"image": attached("a.png", picture)}, {}, "Say which part of the image to repaint"),
        (
            {"image": attached("a.png", picture), "mask": attached("m.png", mask)},
            {"mask_prompt": "the sky"},
            "you gave a mask picture and mask_prompt words",
        ),
        (
            {"image": attached("h.png", holed), "mask": attached("m.png", mask)},
            {},
            "you gave a mask picture and an image with transparent areas",
        ),
        (
            {"image": attached("h.png", holed)},
            {"mask_prompt": "the sky"},
            "you gave an image with transparent areas and mask_prompt words",
        ),
        (
            {"image": attached("a.png", picture), "mask": attached("m.png", mask)},
            {"strength": 0.5},
            "With strength 0.5 and 1 step, no denoising step is left",
        ),
        (
            {"image": attached("a.png", picture), "mask": attached("m.png", mask)},
            {"model": "nope"},
            "no inpainting model called “nope”. You can use: tiny-sd-inpainting",
        ),
    ]
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("bo")
        for files, options, expected in cases:
            handle = await inpaint(stub, student, files=files, **options)
            text = await ephemeral_text(handle)
            assert expected in text, (expected, text)
            # Refused before Discord saw a public answer.
            assert handle.response_type is CallbackType.CHANNEL_MESSAGE, expected
        assert await bot.repo.count_jobs(student.id) == 0

        choices = await stub.autocomplete("inpaint", {"prompt": "x", "model": ""}, focused="model")
        assert choices == [{"name": "tiny-sd-inpainting (default)", "value": "tiny-sd-inpainting"}]
    assert stored_files(harness.settings.storage.input_dir) == []


async def test_an_inpaint_refused_for_its_limit_stores_nothing(harness):
    from tests.bot.e2e.harness import make_settings

    harness.settings = make_settings(
        harness.tmp_path, harness.stub, harness.tiny, images_per_hour=1
    )
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("vic")
        files = {"image": attached("in.png", encode(with_hole(scene(), (10, 10, 40, 40))))}
        first = await inpaint(stub, student, files=files)
        await first.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        stored = stored_files(harness.tmp_path / "inputs")
        assert len(stored) == 2  # the picture and its mask, by content hash

        other = scene((64, 96))  # new content: would be new files
        refused = await inpaint(
            stub,
            student,
            files={"image": attached("b.png", encode(with_hole(other, (5, 5, 30, 30))))},
        )
        assert "in the last hour" in await ephemeral_text(refused)
        assert stored_files(harness.tmp_path / "inputs") == stored
        assert await bot.repo.count_jobs(student.id) == 1
