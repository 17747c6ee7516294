"""The lessons: what each comparison varies, and how its panels are labelled.

Plain functions of a job row (no Discord), shared by the button that asks for a comparison,
the scheduler that turns the row into the engine's ``JobSpec``, and the delivery that labels
the grid. A comparison job copies its parent's settings and seed; ``comparison_values`` holds
what its panels vary, fixed when it was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs import xy_plot
from bot.settings import CourseSettings
from bot.store.models import Job
from bot.ui.i18n import t
from engine.protocol import FAMILIES, SCHEDULERS, Family, JobKind, Variant


@dataclass(frozen=True)
class Lesson:
    """One comparison a button under each result asks for (``bot.views`` draws the buttons)."""

    kind: str  # stored in jobs.comparison
    action: str  # the button's action in its custom id, ``job:<action>:<job id>``


LESSONS: tuple[Lesson, ...] = (
    Lesson("guidance", "cfg"),
    Lesson("steps", "steps"),
    Lesson("schedulers", "sched"),
    Lesson("denoising", "denoise"),
)
BY_KIND = {lesson.kind: lesson for lesson in LESSONS}
BY_ACTION = {lesson.action: lesson for lesson in LESSONS}

Value = float | str  # a guidance scale, a step count or a scheduler name


def denoising_steps(job: Job) -> int:
    """The denoising steps one run of the job takes: ``steps × strength`` from a picture."""
    if JobKind(job.kind).uses_strength:
        return max(1, int(job.steps * job.strength))
    return job.steps


def strip_steps(total: int, panels: int) -> tuple[int, ...]:
    """``panels`` steps spread evenly over 1..``total``, first and last included."""
    return tuple(sorted({max(1, round(total * i / (panels - 1))) for i in range(panels)}))


def applies(kind: str, family: Family) -> bool:
    """Whether the lesson ``kind`` means anything on ``family``: FLUX.1 schnell has no guidance
    scale to vary and runs one sampler, so its CFG and schedulers lessons do not apply."""
    traits = FAMILIES[family]
    if kind == "guidance":
        return traits.guidance is not None
    if kind == "schedulers":
        return len(traits.schedulers) > 1
    return kind in BY_KIND


def lesson_actions(family: Family) -> tuple[str, ...]:
    """The buttons' actions of the lessons that apply to ``family``, in order."""
    return tuple(lesson.action for lesson in LESSONS if applies(lesson.kind, family))


def values_for(
    kind: str, job: Job, course: CourseSettings, family: Family = Family.SD
) -> tuple[Value, ...]:
    """What the panels of a ``kind`` comparison of ``job`` show, from the course settings,
    fitted to the model's ``family``: its steps bound (FLUX.1 schnell's 1-4, where the course's
    counts do not fit, are all four) and its samplers."""
    traits = FAMILIES[family]
    if kind == "guidance":
        return tuple(float(g) for g in course.guidance_values)
    if kind == "steps":
        fitting = tuple(s for s in course.steps_values if s in traits.steps)
        if len(fitting) < 2:
            fitting = tuple(range(traits.steps.min, traits.steps.max + 1))[-8:]
        return fitting
    if kind == "schedulers":
        return tuple(name for name in course.schedulers if traits.takes_scheduler(name))
    if kind == "denoising":
        return strip_steps(denoising_steps(job), course.denoising_panels)
    raise ValueError(f"unknown comparison {kind!r}")


def _values(job: Job) -> list[Value]:
    return list(job.comparison_values or [])


def variants(job: Job) -> tuple[Variant, ...]:
    """The engine's panels for a guidance, steps or schedulers comparison, or a /compare
    grid (``bot.jobs.xy_plot``); () otherwise."""
    if xy_plot.is_grid(job):
        return xy_plot.variants(job)
    labels = panel_labels(job)
    values = _values(job)
    if job.comparison == "guidance":
        return tuple(
            Variant(label, float(g), job.steps, job.scheduler)
            for label, g in zip(labels, values, strict=True)
        )
    if job.comparison == "steps":
        return tuple(
            Variant(label, job.guidance, int(s), job.scheduler)
            for label, s in zip(labels, values, strict=True)
        )
    if job.comparison == "schedulers":
        return tuple(
            Variant(label, job.guidance, job.steps, str(name))
            for label, name in zip(labels, values, strict=True)
        )
    return ()


def decode_steps(job: Job) -> tuple[int, ...]:
    """The steps the denoising strip shows; () for other jobs."""
    return tuple(int(s) for s in _values(job)) if job.comparison == "denoising" else ()


def panel_labels(job: Job, locale: str | None = None) -> list[str]:
    """The label drawn over each panel, in order, in ``locale`` where the words have a
    translation (English by default: the engine's and the recipe's labels); [] for a plain job.

    Only words are translated: "CFG" and the scheduler names are what the course and the
    libraries call them in every language.
    """
    values = _values(job)
    if job.comparison == "guidance":
        return [f"CFG {float(g):g}" for g in values]
    if job.comparison == "steps":
        return [t(locale, "lesson.label.steps", steps=int(s)) for s in values]
    if job.comparison == "schedulers":
        return [SCHEDULERS.get(str(name), str(name)) for name in values]
    if job.comparison == "denoising":
        total = denoising_steps(job)
        return [t(locale, "lesson.label.step", step=int(s), total=total) for s in values]
    return []


def original_panel(job: Job, locale: str | None = None) -> str | None:
    """The label (in ``locale``) of the panel that repeats the parent's own settings (its very
    picture)."""
    own: Value
    if job.comparison == "guidance":
        own = float(job.guidance)
    elif job.comparison == "steps":
        own = job.steps
    elif job.comparison == "schedulers":
        own = job.scheduler
    elif job.comparison == "denoising":
        own = denoising_steps(job)  # the last step's prediction is the finished image
    else:
        return None
    for label, value in zip(panel_labels(job, locale), _values(job), strict=True):
        if value == own:
            return label
    return None
