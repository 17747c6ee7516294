"""ShapeBuckets: compiled only for warmed shapes, smaller batches padded up, the rest eager."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from engine.models.shape_buckets import ShapeBuckets


@dataclass
class Output:
    sample: torch.Tensor


class Recording:
    """A per-row function standing in for a module's forward; records the batches it saw."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, sample: torch.Tensor, scale: torch.Tensor, *, context: torch.Tensor):
        self.batches.append(sample.shape[0])
        return Output(sample=sample * scale + context.sum(dim=1, keepdim=True))


def call(buckets: ShapeBuckets, rows: int, width: int = 4) -> Output:
    torch.manual_seed(rows)
    sample = torch.randn(rows, width)
    return buckets(sample, torch.tensor(2.0), context=torch.randn(rows, 3))


def warmed(*rows: int, width: int = 4) -> tuple[ShapeBuckets, Recording, Recording]:
    eager, compiled = Recording(), Recording()
    buckets = ShapeBuckets(eager, compiled)
    with buckets.warming():
        for n in rows:
            call(buckets, n, width)
    compiled.batches.clear()
    return buckets, eager, compiled


def test_a_warmed_shape_runs_compiled() -> None:
    buckets, eager, compiled = warmed(2, 8)
    call(buckets, 8)
    assert compiled.batches == [8] and eager.batches == []
    assert buckets.warmed_batches() == [2, 8]
    assert buckets.calls["compiled"] == 1


def test_a_smaller_batch_is_padded_to_the_next_bucket_and_trimmed_back() -> None:
    buckets, eager, compiled = warmed(2, 8)
    expected = Recording()
    torch.manual_seed(5)
    sample, context = torch.randn(5, 4), torch.randn(5, 3)
    output = buckets(sample, torch.tensor(2.0), context=context)
    assert compiled.batches == [8] and eager.batches == []
    assert buckets.calls["padded"] == 1
    assert output.sample.shape == (5, 4)
    reference = expected(sample, torch.tensor(2.0), context=context).sample
    torch.testing.assert_close(output.sample, reference)


def test_unwarmed_shapes_and_oversized_batches_run_eagerly() -> None:
    buckets, eager, compiled = warmed(2, 8)
    call(buckets, 9)  # above the largest bucket
    call(buckets, 2, width=6)  # another size
    assert eager.batches == [9, 2] and compiled.batches == []
    assert buckets.calls["eager"] == 2


def test_python_values_are_part_of_the_shape() -> None:
    def forward(sample: torch.Tensor, flag: bool) -> torch.Tensor:
        return sample if flag else -sample

    eager_calls: list[bool] = []
    buckets = ShapeBuckets(
        lambda s, flag: eager_calls.append(flag) or forward(s, flag),
        forward,
    )
    with buckets.warming():
        buckets(torch.ones(2, 2), True)
    buckets(torch.ones(2, 2), False)
    assert eager_calls == [False]


def test_a_failed_compile_is_not_kept() -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no compiler here")

    eager = Recording()
    buckets = ShapeBuckets(eager, broken)
    with pytest.raises(RuntimeError), buckets.warming():
        call(buckets, 2)
    assert buckets.warmed_batches() == []
    call(buckets, 2)
    assert eager.batches == [2]


def test_normalize_rewrites_the_compiled_call_only() -> None:
    seen: list[torch.dtype] = []

    def forward(sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        seen.append(timestep.dtype)
        return sample

    def as_float(args, kwargs):
        return (args[0], torch.as_tensor(args[1], dtype=torch.float32), *args[2:]), kwargs

    buckets = ShapeBuckets(forward, forward, normalize=as_float)
    with buckets.warming():
        buckets(torch.ones(2, 2), torch.tensor(10.5))
    buckets(torch.ones(2, 2), torch.tensor(10))  # an integer timestep shares the float graph
    buckets(torch.ones(3, 2), torch.tensor(10))  # eager: the original argument
    assert seen == [torch.float32, torch.float32, torch.int64]
    assert buckets.calls == {"compiled": 1, "eager": 1}


def test_strided_inputs_are_never_padded() -> None:
    eager, compiled = Recording(), Recording()
    buckets = ShapeBuckets(eager, compiled)

    def strided(rows: int) -> Output:
        sample = torch.randn(rows, 8)[:, ::2]  # rows x 4, not contiguous
        return buckets(sample, torch.tensor(2.0), context=torch.randn(rows, 3))

    with buckets.warming():
        strided(4)
    strided(4)  # the warmed strides: compiled
    strided(3)  # padding would make a contiguous copy the compiled graph was not made for
    assert compiled.batches == [4, 4] and eager.batches == [3]


def test_warming_in_one_thread_leaves_the_others_serving() -> None:
    """A background warm-up compiles while the serving thread keeps calling: the serving
    thread runs eagerly until a shape's warm-up call has returned, then compiled."""
    import threading

    eager, compiled = Recording(), Recording()
    buckets = ShapeBuckets(eager, compiled)
    inside, resume = threading.Event(), threading.Event()

    def warm() -> None:
        with buckets.warming():
            call(buckets, 4)
            inside.set()
            assert resume.wait(10)  # still warming: the serving thread calls meanwhile

    warmer = threading.Thread(target=warm)
    warmer.start()
    assert inside.wait(10)
    call(buckets, 2)  # the serving thread, not warming: 4 rows are warmed, so padded up
    call(buckets, 6)  # nothing this big is warmed: eager
    assert eager.batches == [6] and compiled.batches == [4, 4]
    resume.set()
    warmer.join()
    assert buckets.calls == {"padded": 1, "eager": 1}


def test_each_warmed_shape_runs_the_variant_that_compiled_it() -> None:
    eager, small, big = Recording(), Recording(), Recording()
    buckets = ShapeBuckets(eager, big, variants={"graphs": small, "no-graphs": big})
    with buckets.warming("graphs"):
        call(buckets, 2)
    with buckets.warming("no-graphs"):
        call(buckets, 8)
    small.batches.clear()
    big.batches.clear()
    assert buckets.warmed_variants() == {2: "graphs", 8: "no-graphs"}
    call(buckets, 1)  # padded to 2
    call(buckets, 5)  # padded to 8
    assert small.batches == [2] and big.batches == [8] and eager.batches == []
    with pytest.raises(KeyError), buckets.warming("unknown"):
        pass
