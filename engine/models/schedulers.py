"""Schedulers by friendly name, built from a loaded model's scheduler config.

``make_scheduler`` builds one with ``from_config`` (no weights are reloaded). Building takes
longer than a tiny model's whole step (``from_config`` inspects ``__init__``'s signature and
recomputes the noise schedule), so the engine keeps one per model and kind in a
``SchedulerStore`` and, before each call, puts it back into the state it was built in: no
state (step index, multistep history, an instance attribute a runner wrapped) leaks from one
call into the next, whatever ``set_timesteps`` of a given scheduler resets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    SchedulerMixin,
)

# Without SciPy, `diffusers.LMSDiscreteScheduler` is a placeholder that refuses to be built; the
# class itself lives in its module either way.
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler
from diffusers.utils import is_scipy_available

from engine.protocol import SCHEDULERS


class ExactLMSDiscreteScheduler(LMSDiscreteScheduler):
    """LMS without SciPy: its coefficients are integrals of a polynomial, computed exactly.

    diffusers integrates the Lagrange basis polynomial numerically with ``scipy.integrate.quad``;
    for a polynomial that is exact to rounding, so this gives the same coefficients.
    """

    def get_lms_coefficient(self, order: int, t: int, current_order: int) -> float:
        sigmas = [float(s) for s in self.sigmas]
        basis = np.polynomial.Polynomial([1.0])
        for k in range(order):
            if k == current_order:
                continue
            denominator = sigmas[t - current_order] - sigmas[t - k]
            basis = basis * np.polynomial.Polynomial(
                [-sigmas[t - k] / denominator, 1 / denominator]
            )
        antiderivative = basis.integ()
        return float(antiderivative(sigmas[t + 1]) - antiderivative(sigmas[t]))


# SciPy is optional in diffusers; without it stock LMS fails at its first step.
_LMS: type[LMSDiscreteScheduler] = (
    LMSDiscreteScheduler if is_scipy_available() else ExactLMSDiscreteScheduler
)

_FACTORIES: dict[str, Callable[[Mapping[str, Any]], SchedulerMixin]] = {
    "euler": EulerDiscreteScheduler.from_config,
    "euler_a": EulerAncestralDiscreteScheduler.from_config,
    "dpmpp_2m_karras": lambda config: DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    ),
    "ddim": DDIMScheduler.from_config,
    # Stable Diffusion's own PNDM config skips the Runge-Kutta warm-up (PLMS only); a checkpoint
    # whose config lacks the flag would run it, and it breaks below 4 steps. Always skip it.
    "pndm": lambda config: PNDMScheduler.from_config(config, skip_prk_steps=True),
    "lms": _LMS.from_config,
}
assert _FACTORIES.keys() == SCHEDULERS.keys(), "every wire name needs a factory"


def make_scheduler(name: str, base_config: Mapping[str, Any]) -> SchedulerMixin:
    """A new scheduler of the named kind, configured like the model's own.

    Raises ``KeyError`` for a name outside ``engine.protocol.SCHEDULERS``; validation refuses
    such jobs before they get here.
    """
    return _FACTORIES[name](base_config)


class SchedulerStore:
    """One scheduler per key (a wire name, or a class), handed out as if freshly built.

    A scheduler's state is its instance attributes: ``fresh`` restores them to the ones
    ``build`` left, copying lists, dicts and sets (schedulers append to their history lists and
    assign into them), so what a call changed, added or appended is gone. Schedulers replace
    their tensors and arrays rather than write into them after ``__init__``; the engine's tests
    compare consecutive calls through a kept scheduler with fresh ones, pixel for pixel, for
    every scheduler offered. Used from the GPU's thread only.
    """

    def __init__(self) -> None:
        self._kept: dict[str | type, tuple[SchedulerMixin, dict[str, Any]]] = {}

    def fresh(self, key: str | type, build: Callable[[], SchedulerMixin]) -> SchedulerMixin:
        """The scheduler kept for ``key`` in its built state; ``build`` makes it the first time."""
        kept = self._kept.get(key)
        if kept is None:
            scheduler = build()
            self._kept[key] = (scheduler, dict(vars(scheduler)))
            return scheduler
        scheduler, built = kept
        state = vars(scheduler)
        state.clear()
        state.update({name: _copied(value) for name, value in built.items()})
        return scheduler


def _copied(value: Any) -> Any:
    """A shallow copy of a plain container a call may change in place; anything else as it is
    (the config is a ``FrozenDict``, which nothing changes and whose copy loses its
    attributes)."""
    if type(value) in (list, dict, set):
        return value.copy()
    return value
