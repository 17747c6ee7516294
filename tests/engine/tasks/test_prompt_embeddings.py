"""Weighted and long prompts in the engine: compel's embeddings (SD and SDXL), windows, and
batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compel import Compel, ReturnedEmbeddingsType
from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

from engine.prompt_syntax import parse, plain_text
from engine.protocol import Accepted, ErrorKind, ModelRef
from engine.tasks.prompt_embeddings import PromptReader
from engine.worker import Worker
from tests.engine.helpers import Recorder, job, pixels, run
from tests.engine.test_worker_images import same_cpu_kernels
from tests.fixtures.tiny_families import TinyFamilies
from tests.fixtures.tiny_models import TinyModels

# "cat" is one token of the tiny vocabulary (other words are spelled letter by letter); 75
# tokens fit CLIP's window after BOS and EOS.
CATS = " ".join(["cat"] * 70)


@pytest.fixture(scope="module")
def plain_t2i(tiny_models: TinyModels) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_models.text_to_image, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sdxl(tiny_families: TinyFamilies) -> ModelRef:
    return ModelRef(name="tiny-sdxl", source=str(tiny_families.sdxl))


def _image(worker: Worker, recorder: Recorder, model: ModelRef, **fields: object) -> np.ndarray:
    recorder.events.clear()
    run(worker, job(model, 1, seeds=(5,), **fields))
    return pixels(recorder.result(1).images[0].png)


def test_a_plain_prompt_has_the_pipelines_own_embeddings(
    plain_t2i: StableDiffusionPipeline,
) -> None:
    # Why plain prompts may go as text: compel's reading of them is diffusers' own, bit for bit.
    reader = PromptReader(plain_t2i)
    with torch.inference_mode():
        ours = reader._embeddings("a dog and the cat, sci-fi.")
        theirs, _ = plain_t2i.encode_prompt("a dog and the cat, sci-fi.", "cpu", 1, False)
    assert torch.equal(ours, theirs)


def test_a_weighted_prompt_equals_compel_in_plain_diffusers(
    plain_t2i: StableDiffusionPipeline, worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    engine = _image(worker, recorder, t2i_model, prompt="a (cat:1.5) on a [hill]", guidance=6.0)
    # What a diffusers user writes with compel (and what /recipe's script does).
    compel = Compel(plain_t2i.tokenizer, plain_t2i.text_encoder, truncate_long_prompts=False)

    def embeddings(text: str) -> torch.Tensor:
        fragments = [Fragment(piece.text, piece.weight) for piece in parse(text)]
        return compel.build_conditioning_tensor_for_conjunction(
            Conjunction([FlattenedPrompt(fragments)])
        )[0]

    plain_t2i.scheduler = EulerDiscreteScheduler.from_pretrained(
        t2i_model.source, subfolder="scheduler"
    )  # the engine's default
    with torch.inference_mode(), same_cpu_kernels():
        positive, negative = compel.pad_conditioning_tensors_to_same_length(
            [embeddings("a (cat:1.5) on a [hill]"), embeddings("")]
        )
        plain = plain_t2i(
            prompt_embeds=positive,
            negative_prompt_embeds=negative,
            num_inference_steps=3,
            guidance_scale=6.0,
            width=64,
            height=64,
            generator=torch.Generator().manual_seed(5),
        ).images[0]
    np.testing.assert_array_equal(engine, np.asarray(plain))
    assert not np.array_equal(engine, _image(worker, recorder, t2i_model, prompt="a cat on a hill"))


def test_the_words_past_the_window_now_reach_the_model(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    elephants = _image(worker, recorder, t2i_model, prompt=f"{CATS}, purple elephants")
    (accepted,) = recorder.of(Accepted, 1)
    assert accepted.prompt_chunks == (f"{CATS},", "purple elephants")
    assert accepted.negative_prompt_chunks == ()
    turtles = _image(worker, recorder, t2i_model, prompt=f"{CATS}, green turtles")
    assert not np.array_equal(elephants, turtles)  # once cut at 77 tokens, they were equal


def test_a_short_prompt_has_no_chunks(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    _image(worker, recorder, t2i_model, prompt="a (cat:1.2)", negative_prompt=CATS)
    (accepted,) = recorder.of(Accepted, 1)
    assert accepted.prompt_chunks == () and accepted.negative_prompt_chunks == ()


@pytest.mark.parametrize("model_fixture", ["t2i_model", "sdxl"])
def test_batching_with_other_kinds_of_prompt_changes_no_image(
    worker: Worker, recorder: Recorder, request: pytest.FixtureRequest, model_fixture: str
) -> None:
    # SDXL too: both its encoders' embeddings and the pooled ones, job by job.
    model = request.getfixturevalue(model_fixture)
    kinds = {
        "plain": {"prompt": "a cat on a hill"},
        "weighted": {"prompt": "a (cat:1.3) on a hill"},
        "long": {"prompt": f"{CATS}, purple elephants"},
        "long negative": {"prompt": "a [dog]", "negative_prompt": f"{CATS}. blurry, dark"},
    }
    alone = {name: _image(worker, recorder, model, **fields) for name, fields in kinds.items()}
    recorder.events.clear()
    run(
        worker,
        *(job(model, i, seeds=(5,), **fields) for i, fields in enumerate(kinds.values(), 1)),
    )
    for i, name in enumerate(kinds, 1):
        np.testing.assert_array_equal(pixels(recorder.result(i).images[0].png), alone[name])


def test_a_malformed_prompt_is_refused_by_the_engine_too(
    worker: Worker, recorder: Recorder, t2i_model: ModelRef
) -> None:
    run(worker, job(t2i_model, negative_prompt="(blurry:abc)"))
    error = recorder.error(1)
    assert error.kind is ErrorKind.BAD_INPUT
    assert error.message.startswith("the negative prompt has a weight that is not a number")


@pytest.fixture(scope="module")
def plain_sdxl(tiny_families: TinyFamilies) -> StableDiffusionXLPipeline:
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_families.sdxl, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_plain_sdxl_prompt_has_the_pipelines_own_embeddings(
    plain_sdxl: StableDiffusionXLPipeline,
) -> None:
    # Why plain SDXL prompts may go as text: both encoders' reading and the pooled embedding
    # are diffusers' own, bit for bit.
    reader = PromptReader(plain_sdxl)
    with torch.inference_mode():
        ours = reader._embeddings("a dog and the cat, sci-fi.")
        pooled = reader._pooled("a dog and the cat, sci-fi.")
        theirs, _, their_pooled, _ = plain_sdxl.encode_prompt(
            "a dog and the cat, sci-fi.", device="cpu", do_classifier_free_guidance=False
        )
    assert torch.equal(ours, theirs) and torch.equal(pooled, their_pooled)


def test_an_sdxl_weighted_long_prompt_equals_compel_in_plain_diffusers(
    plain_sdxl: StableDiffusionXLPipeline, worker: Worker, recorder: Recorder, sdxl: ModelRef
) -> None:
    prompt, negative = f"{CATS}, a (cat:1.5) on a [hill]", "(dark:0.5)"
    engine = _image(worker, recorder, sdxl, prompt=prompt, negative_prompt=negative, guidance=6.0)
    (accepted,) = recorder.of(Accepted, 1)
    assert len(accepted.prompt_chunks) == 2 and accepted.prompt_chunks[1] == "a cat on a hill"
    # What a diffusers user writes with compel's SDXL form: both encoders in one Compel.
    compel = Compel(
        tokenizer=[plain_sdxl.tokenizer, plain_sdxl.tokenizer_2],
        text_encoder=[plain_sdxl.text_encoder, plain_sdxl.text_encoder_2],
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
        requires_pooled=[False, True],
        truncate_long_prompts=False,
    )

    def embeddings(text: str) -> tuple[torch.Tensor, torch.Tensor]:
        fragments = [Fragment(piece.text, piece.weight) for piece in parse(text)]
        embeds = compel.build_conditioning_tensor_for_conjunction(
            Conjunction([FlattenedPrompt(fragments)])
        )[0]
        pooled = compel.conditioning_provider.get_pooled_embeddings([plain_text(parse(text))])
        return embeds, pooled

    plain_sdxl.scheduler = EulerDiscreteScheduler.from_pretrained(
        sdxl.source, subfolder="scheduler"
    )  # the engine's default
    with torch.inference_mode(), same_cpu_kernels():
        (positive, pooled), (negative, negative_pooled) = embeddings(prompt), embeddings(negative)
        # The negative's second window: the empty prompt, as both encoders read it.
        empty, _ = embeddings("")
        negative = torch.cat([negative, empty], dim=1)
        plain = plain_sdxl(
            prompt_embeds=positive,
            pooled_prompt_embeds=pooled,
            negative_prompt_embeds=negative,
            negative_pooled_prompt_embeds=negative_pooled,
            num_inference_steps=3,
            guidance_scale=6.0,
            width=64,
            height=64,
            generator=torch.Generator().manual_seed(5),
        ).images[0]
    np.testing.assert_array_equal(engine, np.asarray(plain))
    unweighted = f"{CATS}, a cat on a hill"
    assert not np.array_equal(engine, _image(worker, recorder, sdxl, prompt=unweighted))


def test_a_prompt_is_split_once_until_the_tokenizer_changes(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job's prompt is read by several readers (its Accepted, the grouping, the call): one
    # tokenization serves them all, and a token added to the tokenizer (an embedding loaded)
    # is seen at once.
    from compel.embeddings_provider import EmbeddingsProvider

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_models.text_to_image, safety_checker=None, requires_safety_checker=False
    )
    prompt = f"{CATS}, toyrobot"  # 70 + 1 + 8 letters: past the 75-token window
    assert PromptReader(pipe).chunks(prompt) == (f"{CATS},", "toyrobot")
    tokenized = 0
    original = EmbeddingsProvider.get_token_ids_and_expand_weights

    def counted(self: EmbeddingsProvider, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal tokenized
        tokenized += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingsProvider, "get_token_ids_and_expand_weights", counted)
    assert PromptReader(pipe).chunks(prompt) == (f"{CATS},", "toyrobot")
    assert tokenized == 0
    pipe.tokenizer.add_tokens(["toyrobot"])  # now one token: the prompt fits one window
    assert PromptReader(pipe).chunks(prompt) == ()
    assert tokenized == 1
