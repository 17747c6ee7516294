"""Grouping compatible jobs, per-image arguments, prompt cuts, and batch-invariant layers."""

from __future__ import annotations

import torch
from torch import nn

from engine.models.invariance import PerImageLinear, batch_invariant_kernels, make_batch_invariant
from engine.protocol import JobKind, JobSpec, ModelRef
from engine.run.batching import group_compatible
from engine.tasks.text_to_image import per_image

MODEL = ModelRef(name="m", source="m")


def spec(job_id: int, seeds: int = 1, **fields: object) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        kind=JobKind.TEXT_TO_IMAGE,
        model=MODEL,
        prompt="p",
        seeds=tuple(range(seeds)),
        **fields,  # type: ignore[arg-type]
    )


def test_groups_keep_arrival_order_and_respect_the_image_limit() -> None:
    jobs = [spec(1, 2), spec(2, guidance=3.0), spec(3, 2), spec(4, 1), spec(5, steps=10)]
    groups = group_compatible(jobs, max_images=4)
    assert [[j.job_id for j in g] for g in groups] == [[1, 3], [2], [4], [5]]
    assert group_compatible([spec(1, 6)], max_images=4) == [[spec(1, 6)]]


def test_per_image_layout() -> None:
    assert per_image([spec(1, 2), spec(2, 1)], ["a", "b"]) == ["a", "a", "b"]


def test_per_image_linear_matches_one_image_at_a_time() -> None:
    torch.manual_seed(0)
    inner = nn.Linear(32, 64)
    wrapper = PerImageLinear(inner, nn.Module(), "linear_1")
    images, k = 3, 2
    rows = torch.randn(k * images, 32)  # laid out [uncond_1..3, cond_1..3]
    wrapper.rows_per_image = k
    batched = wrapper(rows)
    for i in range(images):
        alone = inner(rows[[i, images + i]])
        assert torch.equal(batched[[i, images + i]], alone)
    same = torch.randn(1, 32).expand(k * images, 32)
    assert torch.equal(wrapper(same), inner(same[:k]).repeat(images, 1))
    wrapper.rows_per_image = None
    assert torch.equal(wrapper(rows), inner(rows))


def test_the_wrappers_step_aside_for_a_call_of_one_image() -> None:
    # A call of one image has nothing to keep apart: its timestep rows go straight to the
    # Linear, without a wrapper's module call on every UNet step. The Linear stays through a
    # run of lone calls (nothing to swap per job); the next batch puts the wrapper back.
    unet = nn.Module()
    unet.time_embedding = nn.Module()
    plain = unet.time_embedding.linear_1 = nn.Linear(4, 4)
    wrappers = make_batch_invariant(unet, nn.Module())
    assert isinstance(unet.time_embedding.linear_1, PerImageLinear)
    cpu = torch.device("cpu")
    for _ in range(2):
        with batch_invariant_kernels(cpu, wrappers, 2, images=1):
            assert unet.time_embedding.linear_1 is plain
        assert unet.time_embedding.linear_1 is plain
    for images in (3, None):  # None: a call whose number of images is not known
        with batch_invariant_kernels(cpu, wrappers, 2, images=images):
            assert unet.time_embedding.linear_1 is wrappers[0]
            assert wrappers[0].rows_per_image == 2
        assert wrappers[0].rows_per_image is None
        with batch_invariant_kernels(cpu, wrappers, 2, images=1):
            assert unet.time_embedding.linear_1 is plain
