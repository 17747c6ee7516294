"""LoRAs and embeddings in the worker: diffusers' loaders on the loaded model (SD 1.x, SDXL and
FLUX.1's), kept apart in batches, refused when the prompt and the job disagree."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from engine.images.metadata import parse_parameters, read_parameters
from engine.protocol import AdapterKind, AdapterRef, ErrorKind, ModelRef
from engine.worker import Worker
from tests.engine.helpers import Recorder, engine_settings, job, pixels, run
from tests.fixtures.tiny_adapters import EMBEDDING_TOKEN, FamilyAdapters, TinyAdapters
from tests.fixtures.tiny_families import TinyFamilies
from tests.fixtures.tiny_models import TinyModels


def _lora(name: str, source: object, weight: float) -> AdapterRef:
    return AdapterRef(name=name, kind=AdapterKind.LORA, source=str(source), weight=weight)


def _image(recorder: Recorder, job_id: int) -> np.ndarray:
    return pixels(recorder.result(job_id).images[0].png)


def test_loras_change_pixels_weight_zero_does_not_and_batches_keep_them_apart(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, tiny_adapters: TinyAdapters
) -> None:
    style = _lora("style", tiny_adapters.lora, 0.8)
    other = _lora("other", tiny_adapters.other_lora / "pytorch_lora_weights.safetensors", 1.0)
    plain = job(t2i_model, 1, prompt="a cat")
    styled = job(t2i_model, 2, prompt="a cat <lora:style:0.8>", adapters=(style,))
    both = job(
        t2i_model,
        3,
        prompt="a cat <lora:style:0.8> <lora:other:1>",
        adapters=(style, other),
    )
    off = job(
        t2i_model,
        4,
        prompt="a cat <lora:style:0>",
        adapters=(_lora("style", tiny_adapters.lora, 0.0),),
    )
    # One queue, four adapter sets: each must come out as it does alone.
    run(worker, plain, styled, both, off)
    together = {job_id: _image(recorder, job_id) for job_id in (1, 2, 3, 4)}
    for spec in (plain, styled, both, off):
        run(worker, spec.__class__(**{**spec.__dict__, "job_id": spec.job_id + 10}))
        assert np.array_equal(_image(recorder, spec.job_id + 10), together[spec.job_id])

    assert not np.array_equal(together[2], together[1])  # the LoRA changes the picture
    assert not np.array_equal(together[3], together[2])  # a second one changes it again
    assert np.array_equal(together[4], together[1])  # weight 0 is no LoRA, token stripped
    # The web UI's metadata: the prompt as written, and each LoRA's hash of its tensors.
    data = (tiny_adapters.lora / "pytorch_lora_weights.safetensors").read_bytes()
    tensors = data[8 + int.from_bytes(data[:8], "little") :]
    params = parse_parameters(read_parameters(recorder.result(2).images[0].png))
    assert params["prompt"] == "a cat <lora:style:0.8>"
    assert params["Lora hashes"] == f"style: {hashlib.sha256(tensors).hexdigest()[:12]}"
    # Loaded once, kept: both LoRAs are still on the model, which was never reloaded.
    entry = worker.registry.get(t2i_model)
    assert sorted(entry.adapters.loras) == ["other", "style"]


def test_an_embedding_token_is_read_with_its_vector(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, tiny_adapters: TinyAdapters
) -> None:
    prompt = f"a {EMBEDDING_TOKEN} cat"
    embedding = AdapterRef(
        name="tiny-style",
        kind=AdapterKind.EMBEDDING,
        source=str(tiny_adapters.embedding),
        token=EMBEDDING_TOKEN,
    )
    run(worker, job(t2i_model, 1, prompt=prompt))
    run(worker, job(t2i_model, 2, prompt=prompt, adapters=(embedding,)))
    assert not np.array_equal(_image(recorder, 2), _image(recorder, 1))
    assert worker.registry.get(t2i_model).base.tokenizer.tokenize(prompt)[1] == EMBEDDING_TOKEN
    # An admin's removal takes it out again.
    assert worker.registry.unload_adapter(EMBEDDING_TOKEN) == [t2i_model]
    run(worker, job(t2i_model, 3, prompt=prompt))
    assert np.array_equal(_image(recorder, 3), _image(recorder, 1))


def test_lora_refusals(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef, tiny_adapters: TinyAdapters
) -> None:
    style = _lora("style", tiny_adapters.lora, 0.8)
    run(
        worker,
        job(t2i_model, 1, prompt="a cat <lora:style:0.5>", adapters=(style,)),
        job(t2i_model, 2, prompt="a cat <lora:style:3>", adapters=(style,)),
        job(t2i_model, 3, prompt="a cat <lora:gone:1>", adapters=(_lora("gone", "/no/such", 1),)),
    )
    assert "do not match" in recorder.error(1).message
    assert "from 0 to 2" in recorder.error(2).message
    assert recorder.error(3).kind is ErrorKind.MODEL_UNAVAILABLE
    assert recorder.error(3).message == "could not load the LoRA gone"


def test_past_the_setting_the_least_recently_used_lora_is_unloaded(
    tiny_models: TinyModels, t2i_model: ModelRef, tiny_adapters: TinyAdapters
) -> None:
    recorder = Recorder()
    worker = Worker(engine_settings(tiny_models, max_loaded_loras=1), recorder)
    style = _lora("style", tiny_adapters.lora, 1.0)
    other = _lora("other", tiny_adapters.other_lora, 1.0)
    run(worker, job(t2i_model, 1, prompt="a cat <lora:style:1>", adapters=(style,), steps=2))
    run(worker, job(t2i_model, 2, prompt="a cat <lora:other:1>", adapters=(other,), steps=2))
    assert worker.registry.get(t2i_model).adapters.loras == ("other",)
    # Loaded again when asked for: the same picture as the first time.
    run(worker, job(t2i_model, 3, prompt="a cat <lora:style:1>", adapters=(style,), steps=2))
    assert np.array_equal(_image(recorder, 3), _image(recorder, 1))


@pytest.mark.parametrize("family", ["sdxl", "flux"])
def test_a_familys_lora_changes_its_pixels_and_weight_zero_does_not(
    worker: Worker,
    recorder: Recorder,
    tiny_families: TinyFamilies,
    family_adapters: FamilyAdapters,
    family: str,
) -> None:
    model = ModelRef(name=f"tiny-{family}", source=str(getattr(tiny_families, family)))
    source = getattr(family_adapters, f"{family}_lora")
    # FLUX.1 schnell takes no guidance: its jobs store 0.
    fields: dict[str, object] = {"guidance": 0.0} if family == "flux" else {}
    run(
        worker,
        job(model, 1, prompt="a cat", **fields),
        job(
            model, 2, prompt="a cat <lora:ink:0.8>", adapters=(_lora("ink", source, 0.8),), **fields
        ),
        job(model, 3, prompt="a cat <lora:ink:0>", adapters=(_lora("ink", source, 0.0),), **fields),
    )
    assert not np.array_equal(_image(recorder, 2), _image(recorder, 1))
    assert np.array_equal(_image(recorder, 3), _image(recorder, 1))
    assert worker.registry.get(model).adapters.loras == ("ink",)


def test_an_sdxl_embedding_reaches_both_encoders_and_flux_takes_none(
    worker: Worker,
    recorder: Recorder,
    tiny_families: TinyFamilies,
    family_adapters: FamilyAdapters,
) -> None:
    sdxl = ModelRef(name="tiny-sdxl", source=str(tiny_families.sdxl))
    flux = ModelRef(name="tiny-flux", source=str(tiny_families.flux))
    token = "<xl-style>"
    embedding = AdapterRef(
        name="xl-style",
        kind=AdapterKind.EMBEDDING,
        source=str(family_adapters.sdxl_embedding),
        token=token,
    )
    prompt = f"a {token} cat"
    run(worker, job(sdxl, 1, prompt=prompt), job(sdxl, 2, prompt=prompt, adapters=(embedding,)))
    assert not np.array_equal(_image(recorder, 2), _image(recorder, 1))
    base = worker.registry.get(sdxl).base
    for tokenizer in (base.tokenizer, base.tokenizer_2):
        assert tokenizer.tokenize(prompt)[1] == token
    assert worker.registry.unload_adapter(token) == [sdxl]
    assert base.tokenizer_2.tokenize(prompt)[1] != token
    run(worker, job(sdxl, 3, prompt=prompt))
    assert np.array_equal(_image(recorder, 3), _image(recorder, 1))

    run(worker, job(flux, 4, prompt=prompt, guidance=0.0, adapters=(embedding,)))
    assert recorder.error(4).kind is ErrorKind.BAD_INPUT
    assert recorder.error(4).message == "FLUX.1 schnell takes no embeddings"
