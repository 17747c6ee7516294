"""The fast path: each setting takes effect when a model loads, and images are still made.

Compiling uses torch.compile's ``eager`` backend here: it traces the graph like inductor (so
graph breaks, guards and recompiles behave the same) but runs PyTorch's own kernels, in seconds
on a CPU. Kernel-level numerics are for the GPU tests at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from engine.models.fast_path import FastPathSettings, apply_fast_path, set_attention
from engine.models.invariance import PerImageLinear, make_batch_invariant
from engine.models.shape_buckets import ShapeBuckets
from engine.protocol import ModelRef, Result
from engine.settings import EngineSettings
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings, job, pixels, run
from tests.fixtures.tiny_models import TinyModels

CPU = torch.device("cpu")
COMPILE_ON_CPU = {
    "compile_unet": True,
    "compile_vae": True,
    "compile_backend": "eager",
    "compile_buckets": "64x64x1",
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
    settings = FastPathSettings.from_engine(defaults)
    report = apply_fast_path(pipe, settings, CPU, wrappers)
    assert report.invariance is wrappers
    assert report.compiled == {} and report.warm_up_s == {}
    assert "forward" not in vars(pipe.unet) and "decode" not in vars(pipe.vae)
    assert pipe.unet.conv_in.weight.is_contiguous()
    assert set(report.attention) == {"AttnProcessor2_0"}
    assert pipe.vae.use_slicing and not pipe.vae.use_tiling  # as make_batch_invariant left it


def test_buckets_beyond_the_engine_bounds_are_dropped(tiny_models: TinyModels) -> None:
    settings = engine_settings(
        tiny_models,
        max_batch_images=4,
        compile_buckets="512x512x1, 512x512x8,1088x1024x1,768x512x2,32x512x1",
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
    plain = Worker(engine_settings(tiny_models, **common), plain_recorder)
    fast = Worker(
        engine_settings(
            tiny_models,
            **common,
            channels_last=True,
            cudnn_benchmark=True,
            compile_unet=True,
            compile_vae=True,
            compile_mode="default",  # autotuning adds minutes and changes no value
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
