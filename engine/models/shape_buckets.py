"""Call a compiled function only with the shapes it was compiled for; pad smaller batches up.

``torch.compile`` with static shapes compiles once per input shape, and a compile with
``max-autotune`` takes minutes: one in the middle of serving would stall every waiting job. So
the engine compiles at load, for a fixed list of (size, batch) buckets, and while serving:

- a call whose inputs match a warmed bucket except for a smaller batch is padded up to the
  nearest warmed batch (repeating its last row) and its output trimmed back. Rows never mix in
  a UNet or a VAE decoder (every layer works per sample), so padding changes no picture;
- every other call (a size that was not warmed, a batch above the largest bucket) runs the
  plain module, as if nothing were compiled.

A call's "shape" is everything ``torch.compile`` would guard on: each tensor's shape (the batch
dimension left open), dtype, device and layout, and the value of every plain Python argument.
Any tensor whose first dimension equals the batch is taken for a batched input and padded.

Warming may run in a background thread while the serving thread calls the same object: the
warming flag is per thread, and the table of warmed shapes is replaced whole under a lock, never
changed in place, so the serving thread reads a consistent table without waiting. A shape
becomes servable compiled only once its warm-up call has returned.

A bucket may be compiled in a mode of its own (CUDA graphs pay off for small batches, whose
kernel launches dominate, and cost memory for big ones): ``variants`` holds one compiled
function per mode, and each warmed shape remembers the variant that compiled it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import torch

Normalize = Callable[[tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]

_ANY_BATCH = -1
DEFAULT_VARIANT = ""


class ShapeBuckets:
    """A stand-in for a module's ``forward`` that routes each call to a compiled function or
    ``eager``.

    ``compiled`` is the default compiled function; ``variants`` names more of them (one per
    compile mode). ``normalize`` rewrites a call's arguments before a compiled path (the
    UNet's timestep becomes a float32 tensor, so integer and float schedulers share one
    compiled graph). ``calls`` counts the routes the serving threads took: ``compiled``,
    ``padded`` (compiled after padding) and ``eager``.
    """

    def __init__(
        self,
        eager: Callable[..., Any],
        compiled: Callable[..., Any],
        *,
        normalize: Normalize | None = None,
        variants: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.eager = eager
        self.compiled = compiled
        self._variants: dict[str, Callable[..., Any]] = {DEFAULT_VARIANT: compiled}
        self._variants.update(variants or {})
        self._normalize = normalize
        # shape -> {rows: variant}; replaced whole (never changed in place) under the lock.
        self._warmed: Mapping[Hashable, Mapping[int, str]] = MappingProxyType({})
        self._write_lock = threading.Lock()
        self._thread = threading.local()  # .variant: the one being warmed in this thread
        self.calls: Counter[str] = Counter()

    @contextlib.contextmanager
    def warming(self, variant: str = "") -> Iterator[None]:
        """While inside, this thread's calls are compiled by ``variant`` (the default one when
        empty), and each call's shape is kept once it succeeds; other threads are unaffected."""
        if variant not in self._variants:
            raise KeyError(f"no compiled variant {variant!r}")
        self._thread.variant = variant
        try:
            yield
        finally:
            del self._thread.variant

    def warmed_batches(self) -> list[int]:
        """The batch sizes compiled so far, over all warmed shapes."""
        return sorted({rows for batches in self._warmed.values() for rows in batches})

    def warmed_variants(self) -> dict[int, str]:
        """The variant each warmed batch size runs (the last one warmed, if shapes differ)."""
        return {rows: name for batches in self._warmed.values() for rows, name in batches.items()}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() == 0:
            self.calls["eager"] += 1
            return self.eager(*args, **kwargs)
        call_args, call_kwargs = (
            self._normalize(args, kwargs) if self._normalize else (args, dict(kwargs))
        )
        rows = int(args[0].shape[0])
        key = _signature((call_args, call_kwargs), rows)
        warming = getattr(self._thread, "variant", None)
        if warming is not None:
            output = self._variants[warming](*call_args, **call_kwargs)
            # Kept only after the compile worked, so a failed one is never tried while serving.
            self._keep(key, rows, warming)
            return output
        batches = self._warmed.get(key, {})
        target = min((n for n in batches if n >= rows), default=None)
        if target == rows:
            self.calls["compiled"] += 1
            return self._variants[batches[rows]](*call_args, **call_kwargs)
        if target is None or not _batched_inputs_contiguous((call_args, call_kwargs), rows):
            self.calls["eager"] += 1
            return self.eager(*args, **kwargs)
        self.calls["padded"] += 1
        padded_args, padded_kwargs = _map((call_args, call_kwargs), lambda t: _pad(t, rows, target))
        output = self._variants[batches[target]](*padded_args, **padded_kwargs)
        return _map(output, lambda t: t[:rows] if t.dim() and t.shape[0] == target else t)

    def _keep(self, key: Hashable, rows: int, variant: str) -> None:
        with self._write_lock:
            table = dict(self._warmed)
            table[key] = MappingProxyType({**table.get(key, {}), rows: variant})
            self._warmed = MappingProxyType(table)


def _signature(value: Any, rows: int) -> Hashable:
    """What ``torch.compile`` guards on, with the batch dimension left open."""
    if isinstance(value, torch.Tensor):
        shape = tuple(value.shape)
        if shape and shape[0] == rows:
            shape = (_ANY_BATCH, *shape[1:])
        return ("tensor", shape, value.dtype, value.device, value.is_contiguous())
    if isinstance(value, dict):
        return ("dict", tuple((k, _signature(v, rows)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_signature(v, rows) for v in value))
    if value is None or isinstance(value, bool | int | float | str):
        return ("value", value)
    return ("object", type(value).__qualname__)


def _batched_inputs_contiguous(value: Any, rows: int) -> bool:
    # Padding makes contiguous copies; a strided input would miss the compiled graph's guards.
    return all(t.is_contiguous() for t in _tensors(value) if t.dim() and t.shape[0] == rows)


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def _pad(tensor: torch.Tensor, rows: int, target: int) -> torch.Tensor:
    if tensor.dim() == 0 or tensor.shape[0] != rows:
        return tensor
    filler = tensor[-1:].expand(target - rows, *tensor.shape[1:])
    return torch.cat([tensor, filler])


def _map(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``fn`` applied to every tensor in nested tuples, lists, dicts and output dataclasses."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _map(getattr(value, f.name), fn) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return {key: _map(item, fn) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_map(item, fn) for item in value)
    if isinstance(value, list):
        return [_map(item, fn) for item in value]
    return value
