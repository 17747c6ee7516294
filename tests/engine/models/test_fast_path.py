"""The fast path: each setting takes effect when a model loads, and images are still made.

Compiling uses torch.compile's ``eager`` backend here: it traces the graph like inductor (so
graph breaks, guards and recompiles behave the same) but runs PyTorch's own kernels, in seconds
on a CPU. Kernel-level numerics are for the GPU tests at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from engine.models import fast_path
from engine.models.fast_path import FastPathSettings, apply_fast_path, set_attention
from engine.models.invariance import PerImageLinear, make_batch_invariant
from engine.models.shape_buckets import ShapeBuckets
from engine.protocol import ModelRef, Result
from engine.settings import EngineSettings
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings, job, pixels, run
from tests.fixtures.tiny_models import TinyModels

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
COMPILE_ON_CPU = {
    "compile_unet": True,
    "compile_vae": True,
    "compile_backend": "eager",
    "compile_buckets": "64x64x1",
    "compile_in_background": False,
}
NO_FAST_PATH = {
    "channels_last": False,
    "cudnn_benchmark": False,
    "compile_unet": False,
    "compile_vae": False,
}


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    # Compiled code is cached per function across tests; start and leave each test clean.
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def plain_pipeline(tiny: TinyModels) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny.text_to_image, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_of(recorder: Recorder, job_id: int) -> np.ndarray:
    result = recorder.result(job_id)
    assert isinstance(result, Result)
    return pixels(result.images[0].png)


def test_the_default_settings_change_nothing(tiny_models: TinyModels) -> None:
    pipe = plain_pipeline(tiny_models)
    wrappers = make_batch_invariant(pipe.unet, pipe.vae)
    defaults = EngineSettings(_env_file=None)  # type: ignore[call-arg]
    settings = FastPathSettings.from_engine(defaults, CPU)
    report = apply_fast_path(pipe, settings, CPU, wrappers)
    assert report.invariance is wrappers
    assert report.compiled == {} and report.warm_up_s == {}
    assert "forward" not in vars(pipe.unet) and "decode" not in vars(pipe.vae)
    assert pipe.unet.conv_in.weight.is_contiguous()
    assert set(report.attention) == {"AttnProcessor2_0"}
    assert pipe.vae.use_slicing and not pipe.vae.use_tiling  # as make_batch_invariant left it


def test_speed_on_cuda_and_bit_exact_batching_on_the_cpu_by_default() -> None:
    defaults = EngineSettings(_env_file=None)  # type: ignore[call-arg]
    cpu = FastPathSettings.from_engine(defaults, CPU)
    assert cpu.batch_invariance and cpu.vae_slicing_min_images == 1
    assert not (cpu.channels_last or cpu.cudnn_benchmark or cpu.compile_unet or cpu.compile_vae)
    assert cpu.cuda_graphs_max_images == 0

    cuda = FastPathSettings.from_engine(defaults, CUDA)
    assert not cuda.batch_invariance and cuda.vae_slicing_min_images is None  # batched decode
    assert cuda.channels_last and cuda.cudnn_benchmark and cuda.compile_unet and cuda.compile_vae
    assert cuda.compile_in_background and cuda.attention == "sdpa"
    # CUDA graphs for the small buckets, where kernel launches dominate; none for big ones.
    modes = {bucket[2]: cuda.mode_for(bucket) for bucket in cuda.buckets}
    assert modes == {
        1: "max-autotune",
        2: "max-autotune",
        4: "max-autotune",
        8: "max-autotune-no-cudagraphs",
        16: "max-autotune-no-cudagraphs",
    }


def test_the_engine_device_decides_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EngineSettings, "torch_device", lambda self: CUDA)
    settings = EngineSettings(_env_file=None)  # type: ignore[call-arg]
    resolved = FastPathSettings.from_engine(settings)
    assert resolved.compile_unet and not resolved.batch_invariance


def test_every_choice_can_be_forced_either_way() -> None:
    on_cuda = EngineSettings(  # type: ignore[call-arg]
        _env_file=None,
        batch_invariance=True,
        channels_last=False,
        cudnn_benchmark=False,
        compile_unet=False,
        compile_vae=True,
        compile_mode="default",
        vae_slicing_min_images=4,
    )
    forced = FastPathSettings.from_engine(on_cuda, CUDA)
    assert forced.batch_invariance and forced.vae_slicing_min_images == 4
    assert not (forced.channels_last or forced.cudnn_benchmark or forced.compile_unet)
    assert forced.compile_vae and forced.mode_for((512, 512, 1)) == "default"
    # Invariance on CUDA brings its sliced VAE along unless slicing is set apart.
    invariant = EngineSettings(_env_file=None, batch_invariance=True)  # type: ignore[call-arg]
    assert FastPathSettings.from_engine(invariant, CUDA).vae_slicing_min_images == 1

    on_cpu = EngineSettings(  # type: ignore[call-arg]
        _env_file=None, batch_invariance=False, channels_last=True, compile_unet=True
    )
    cpu = FastPathSettings.from_engine(on_cpu, CPU)
    assert not cpu.batch_invariance and cpu.vae_slicing_min_images is None
    assert cpu.channels_last and cpu.compile_unet and not cpu.compile_vae
    assert cpu.mode_for((512, 512, 1)) == "max-autotune-no-cudagraphs"  # no CUDA graphs here
    no_graphs = EngineSettings(_env_file=None, compile_cuda_graphs_max_images=0)  # type: ignore[call-arg]
    assert FastPathSettings.from_engine(no_graphs, CUDA).mode_for((512, 512, 1)) == (
        "max-autotune-no-cudagraphs"
    )


def test_the_cuda_defaults_leave_the_model_unwrapped_and_decoding_whole_batches(
    tiny_models: TinyModels,
) -> None:
    """What the registry does on CUDA, minus the compiler and the device: no per-image
    wrappers (their torch.equal syncs the device in every timestep layer), no VAE slicing."""
    pipe = plain_pipeline(tiny_models)
    defaults = EngineSettings(_env_file=None)  # type: ignore[call-arg]
    cuda = replace(
        FastPathSettings.from_engine(defaults, CUDA), compile_unet=False, compile_vae=False
    )
    report = apply_fast_path(pipe, cuda, CPU, [])
    assert report.invariance == [] and report.channels_last
    assert not any(isinstance(m, PerImageLinear) for m in pipe.unet.modules())
    assert not pipe.vae.use_slicing and not pipe.vae.use_tiling
    seen = decoded_batches(pipe.vae)
    pipe("a cat", width=64, height=64, num_inference_steps=1, num_images_per_prompt=3)
    assert seen == [("plain", 3, 8)]


def test_small_buckets_compile_with_cuda_graphs_and_big_ones_without(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compile modes reach torch.compile, one compiled function per mode, and each warmed
    shape runs the one that compiled it. (The modes themselves need a GPU; here every
    "compiled" function is the eager one.)"""
    modes: list[str] = []

    def recording_compile(fn: Any, **options: Any) -> Any:
        modes.append(options["mode"])

        def compiled(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return compiled

    monkeypatch.setattr(torch, "compile", recording_compile)
    pipe = plain_pipeline(tiny_models)
    settings = FastPathSettings(
        compile_unet=True,
        compile_vae=True,
        cuda_graphs_max_images=1,
        buckets=((64, 64, 1), (64, 64, 2)),
    )
    report = apply_fast_path(pipe, settings, CPU, make_batch_invariant(pipe.unet, pipe.vae))
    assert sorted(modes) == ["max-autotune", "max-autotune", *["max-autotune-no-cudagraphs"] * 2]
    # The UNet sees two rows per image under guidance.
    assert report.compiled["unet"].warmed_variants() == {
        2: "max-autotune",
        4: "max-autotune-no-cudagraphs",
    }
    assert set(report.warm_up_s) == {(64, 64, 1), (64, 64, 2)}


def _held_warm_up(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make each background warm-up wait, before its first bucket, until the event is set."""
    release = threading.Event()
    warm_up = fast_path._warm_up

    def held(*args: Any, **kwargs: Any) -> None:
        assert release.wait(60)
        warm_up(*args, **kwargs)

    monkeypatch.setattr(fast_path, "_warm_up", held)
    return release


def test_jobs_run_uncompiled_while_the_buckets_compile_in_the_background(
    tiny_models: TinyModels, t2i_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = _held_warm_up(monkeypatch)
    background = {**COMPILE_ON_CPU, "compile_in_background": True}
    recorder, plain_recorder = Recorder(), Recorder()
    worker = Worker(engine_settings(tiny_models, **background), recorder)
    plain = Worker(engine_settings(tiny_models), plain_recorder)
    entry = worker.registry.get(t2i_model)  # returns at once: the warm-up waits
    warm_up = entry.fast_path.background if entry.fast_path else None
    assert warm_up is not None and not warm_up.done
    unet, decoder = entry.base.unet.forward, entry.base.vae.decoder.forward
    assert isinstance(unet, ShapeBuckets) and isinstance(decoder, ShapeBuckets)

    run(worker, job(t2i_model, 1))  # served at once, uncompiled
    assert unet.calls == {"eager": 3} and decoder.calls == {"eager": 1}
    release.set()
    assert warm_up.wait(120)
    assert entry.fast_path is not None and set(entry.fast_path.warm_up_s) == {(64, 64, 1)}
    # The serving thread uses what the warm-up thread compiled, without compiling again.
    with torch._dynamo.config.patch(error_on_recompile=True):
        run(worker, job(t2i_model, 2))
    assert unet.calls["compiled"] == 3 and decoder.calls["compiled"] == 1
    run(plain, job(t2i_model, 1), job(t2i_model, 2))
    for job_id in (1, 2):
        assert np.array_equal(image_of(recorder, job_id), image_of(plain_recorder, job_id))


def test_unloading_stops_a_background_warm_up(
    tiny_models: TinyModels, t2i_model: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = _held_warm_up(monkeypatch)
    background = {**COMPILE_ON_CPU, "compile_in_background": True}
    background["compile_buckets"] = "64x64x1,64x64x2"
    settings = engine_settings(tiny_models, **background)
    worker = Worker(settings, Recorder())
    entry = worker.registry.get(t2i_model)
    assert entry.fast_path is not None and entry.fast_path.background is not None
    worker.registry.unload(t2i_model)
    release.set()
    assert entry.fast_path.background.wait(60)
    assert entry.fast_path.skipped == {(64, 64, 1): "stopped", (64, 64, 2): "stopped"}
    assert entry.fast_path.warm_up_s == {}


def test_buckets_beyond_the_engine_bounds_are_dropped(tiny_models: TinyModels) -> None:
    settings = engine_settings(
        tiny_models,
        max_batch_images=4,
        compile_buckets="512x512x1, 512x512x8,1600x1024x1,768x512x2,32x512x1",
    )
    assert FastPathSettings.from_engine(settings).buckets == ((512, 512, 1), (768, 512, 2))


@pytest.mark.parametrize("bad", ["512x512", "512x512xfour", "0x512x1"])
def test_malformed_buckets_are_refused(tiny_models: TinyModels, bad: str) -> None:
    with pytest.raises(ValueError, match="compile_buckets"):
        engine_settings(tiny_models, compile_buckets=bad)


def test_channels_last_weights_still_make_images(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    recorder = Recorder()
    worker = Worker(engine_settings(tiny_models, channels_last=True), recorder)
    run(worker, job(t2i_model, 1, seeds=(3, 4)))
    pipe = worker.registry.get(t2i_model).base
    for conv in (pipe.unet.conv_in, pipe.unet.conv_out, pipe.vae.decoder.conv_in):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
    assert len(recorder.result(1).images) == 2


def test_attention_processors_are_swapped_both_ways(tiny_models: TinyModels) -> None:
    pipe = plain_pipeline(tiny_models)
    counts = set_attention("classic", pipe.unet, pipe.vae)
    assert set(counts) == {"AttnProcessor"}
    assert all(type(p) is AttnProcessor for p in pipe.unet.attn_processors.values())
    counts = set_attention("sdpa", pipe.unet, pipe.vae)
    assert set(counts) == {"AttnProcessor2_0"} and sum(counts.values()) > 0
    assert all(type(p) is AttnProcessor2_0 for p in pipe.vae.attn_processors.values())


def test_classic_attention_makes_the_same_picture(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    images = []
    for attention in ("sdpa", "classic"):
        recorder = Recorder()
        worker = Worker(engine_settings(tiny_models, attention=attention), recorder)
        run(worker, job(t2i_model, 1))
        images.append(image_of(recorder, 1).astype(int))
    assert np.abs(images[0] - images[1]).max() <= 2  # one rounding step, not a new picture


def decoded_batches(vae: Any) -> list[tuple[str, int, int]]:
    """Spy on the VAE: (path, images, latent side) of every decode it runs."""
    seen: list[tuple[str, int, int]] = []
    plain, tiled = vae._decode, vae.tiled_decode

    def spy_plain(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(("plain", z.shape[0], z.shape[-1]))
        return plain(z, *args, **kwargs)

    def spy_tiled(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(("tiled", z.shape[0], z.shape[-1]))
        return tiled(z, *args, **kwargs)

    vae._decode, vae.tiled_decode = spy_plain, spy_tiled
    return seen


def test_vae_tiles_from_the_pixel_threshold_on(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    recorder = Recorder()
    worker = Worker(engine_settings(tiny_models, vae_tiling_min_pixels=128 * 128), recorder)
    vae = worker.registry.get(t2i_model).base.vae
    seen = decoded_batches(vae)
    run(worker, job(t2i_model, 1, width=64, height=64), job(t2i_model, 2, width=128, height=128))
    # Every decode enters the plain path, which hands big latents to the tiled one.
    assert [entry for entry in seen if entry[0] == "tiled"] == [("tiled", 1, 16)]
    assert image_of(recorder, 2).shape == (128, 128, 3)


def test_vae_slices_from_the_image_threshold_on(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    recorder = Recorder()
    worker = Worker(engine_settings(tiny_models, vae_slicing_min_images=3), recorder)
    seen = decoded_batches(worker.registry.get(t2i_model).base.vae)
    run(worker, job(t2i_model, 1, seeds=(1, 2)))
    run(worker, job(t2i_model, 2, seeds=(1, 2, 3)))
    assert [images for _, images, _ in seen] == [2, 1, 1, 1]
    assert len(recorder.result(2).images) == 3


def test_compiled_unet_and_decoder_serve_warmed_buckets(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    plain_recorder = Recorder()
    plain = Worker(engine_settings(tiny_models), plain_recorder)
    recorder = Recorder()
    worker = Worker(engine_settings(tiny_models, **COMPILE_ON_CPU), recorder)
    entry = worker.registry.get(t2i_model)  # loads and warms 64x64x1
    unet, decoder = entry.base.unet.forward, entry.base.vae.decoder.forward
    assert isinstance(unet, ShapeBuckets) and isinstance(decoder, ShapeBuckets)
    assert unet.warmed_batches() == [2]  # one image under guidance: two UNet rows
    assert decoder.warmed_batches() == [1]
    # The timestep wrappers' data-dependent branch would break the graph; they are gone.
    assert entry.invariance == []
    assert not any(isinstance(m, PerImageLinear) for m in entry.base.unet.modules())

    run(worker, job(t2i_model, 1))  # the warmed bucket
    assert unet.calls == {"compiled": 3} and decoder.calls == {"compiled": 1}
    run(plain, job(t2i_model, 1))
    assert np.array_equal(image_of(recorder, 1), image_of(plain_recorder, 1))

    run(worker, job(t2i_model, 2, guidance=1.0))  # unguided: one row, padded to two
    assert unet.calls["padded"] == 3
    run(plain, job(t2i_model, 2, guidance=1.0))
    difference = image_of(recorder, 2).astype(int) - image_of(plain_recorder, 2).astype(int)
    assert np.abs(difference).mean() < 1.0

    run(worker, job(t2i_model, 3, width=128, height=128))  # never warmed: uncompiled
    assert unet.calls["eager"] == 3 and decoder.calls["eager"] == 1
    assert image_of(recorder, 3).shape == (128, 128, 3)


def test_a_compiler_that_fails_leaves_the_model_uncompiled(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiler(fn: Any, **options: Any) -> Any:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no C compiler on this host")

        return broken

    monkeypatch.setattr(torch, "compile", no_compiler)
    pipe = plain_pipeline(tiny_models)
    settings = FastPathSettings(compile_unet=True, compile_vae=True, buckets=((64, 64, 1),))
    report = apply_fast_path(pipe, settings, CPU, make_batch_invariant(pipe.unet, pipe.vae))
    assert report.compiled == {} and report.warm_up_s == {}
    assert report.skipped == {(64, 64, 1): "compile failed: RuntimeError"}
    assert "forward" not in vars(pipe.unet) and "forward" not in vars(pipe.vae.decoder)
    image = pipe("a cat", width=64, height=64, num_inference_steps=2).images[0]
    assert image.size == (64, 64)


# --- GPU: the real compiler and half precision -------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inductor_channels_last_fp16_on_cuda_keeps_the_picture(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    common = {"device": "cuda", "dtype": "float16", "compile_buckets": "64x64x1,64x64x4"}
    plain_recorder, fast_recorder = Recorder(), Recorder()
    plain = Worker(engine_settings(tiny_models, **common, **NO_FAST_PATH), plain_recorder)
    fast = Worker(
        engine_settings(
            tiny_models,
            **common,
            channels_last=True,
            cudnn_benchmark=True,
            compile_unet=True,
            compile_vae=True,
            compile_mode="default",  # autotuning adds minutes and changes no value
            compile_in_background=False,
        ),
        fast_recorder,
    )
    for worker in (plain, fast):
        run(worker, job(t2i_model, 1, seeds=(5,)))
        run(worker, job(t2i_model, 2, seeds=(5, 6, 7)))  # padded up to the 4-image bucket
    for job_id in (1, 2):
        difference = image_of(fast_recorder, job_id).astype(int) - image_of(
            plain_recorder, job_id
        ).astype(int)
        assert np.abs(difference).mean() < 2.0
    unet = fast.registry.get(t2i_model).base.unet.forward
    assert isinstance(unet, ShapeBuckets)
    assert unet.calls["compiled"] > 0 and unet.calls["padded"] > 0 and unet.calls["eager"] == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_defaults_serve_at_once_then_compiled_with_cuda_graphs(
    tiny_models: TinyModels, t2i_model: ModelRef
) -> None:
    """The defaults on CUDA: served eagerly while the background warm-up compiles, then
    compiled, CUDA graphs for the small buckets and none for the big one."""
    plain_recorder, recorder = Recorder(), Recorder()
    plain = Worker(engine_settings(tiny_models, device="cuda", **NO_FAST_PATH), plain_recorder)
    worker = Worker(
        engine_settings(tiny_models, device="cuda", compile_buckets="64x64x1,64x64x4,64x64x8"),
        recorder,
    )
    entry = worker.registry.get(t2i_model)
    assert entry.fast_path is not None and entry.fast_path.background is not None
    run(worker, job(t2i_model, 1, seeds=(5,)))  # while compiling
    assert entry.fast_path.background.wait(900), "the warm-up took over 15 minutes"
    assert set(entry.fast_path.warm_up_s) == {(64, 64, 1), (64, 64, 4), (64, 64, 8)}, (
        entry.fast_path.skipped
    )
    unet = entry.base.unet.forward
    assert isinstance(unet, ShapeBuckets)
    assert unet.warmed_variants() == {
        2: "max-autotune",
        8: "max-autotune",
        16: "max-autotune-no-cudagraphs",
    }
    jobs = [job(t2i_model, 2, seeds=(5,)), job(t2i_model, 3, seeds=(5, 6, 7))]
    big = [job(t2i_model, 4, seeds=(1, 2, 3, 4)), job(t2i_model, 5, seeds=(5, 6, 7, 8))]
    run(plain, job(t2i_model, 1, seeds=(5,)))
    for each in (plain, worker):
        run(each, *jobs)  # one call of 4 images: the graphed bucket
        run(each, *big)  # 8 images: compiled without graphs
    assert unet.calls["compiled"] > 0 and unet.calls["padded"] == 0
    for job_id in (1, 2, 3, 4, 5):
        for got, want in zip(
            recorder.result(job_id).images, plain_recorder.result(job_id).images, strict=True
        ):
            difference = pixels(got.png).astype(int) - pixels(want.png).astype(int)
            assert np.abs(difference).mean() < 2.0


def test_the_warm_up_call_runs_a_depth_pipeline_at_the_buckets_shape(tiny_depth: Path) -> None:
    from diffusers import StableDiffusionDepth2ImgPipeline

    pipeline = StableDiffusionDepth2ImgPipeline.from_pretrained(tiny_depth)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(**fast_path._warm_up_call(pipeline, (64, 48, 2))).images
    assert images.shape == (2, 48, 64, 3) and np.isfinite(images).all()
