"""/compare's axes and the lessons, fitted to the model's family (``FAMILIES``)."""

from __future__ import annotations

import re

import pytest

from bot.jobs.comparison_results import caption
from bot.jobs.lessons import applies, lesson_actions, values_for
from bot.jobs.xy_families import check_denoising_left_on_axes, check_family_axes, one_family
from bot.jobs.xy_values import Axis
from bot.settings import CourseSettings
from bot.store.models import Model
from bot.ui.errors import UserInputError
from engine.protocol import Family, GeneratedImage, JobKind, Result
from tests.bot.jobs.test_lessons import parent

SD, SDXL, FLUX = Family.SD, Family.SDXL, Family.FLUX


@pytest.mark.parametrize(
    ("family", "axes", "refusal"),
    [
        (SD, [Axis("guidance", (0.0, 7.5)), Axis("scheduler", ("ddim", "euler_a"))], None),
        (SDXL, [Axis("steps", (10, 50)), Axis("guidance", (3.0, 7.0))], None),
        (SDXL, [Axis("scheduler", ("euler", "dpmpp_2m_karras"))], None),
        (FLUX, [Axis("steps", (1, 4)), Axis("seed", (1, 2))], None),
        (FLUX, [Axis("strength", (0.5, 0.9))], None),
        (
            FLUX,
            [Axis("guidance", (3.0, 7.5))],
            "FLUX.1 schnell takes no guidance: it is guidance-distilled.",
        ),
        (
            FLUX,
            [Axis("seed", (1, 2)), Axis("steps", (2, 8))],
            "y_values: steps 8 is out of range for FLUX.1 schnell; its steps are between 1 and 4.",
        ),
        (
            FLUX,
            [Axis("scheduler", ("euler", "ddim"))],
            "FLUX.1 schnell runs only its own sampler (Euler): there are no schedulers to compare.",
        ),
    ],
)
def test_axes_are_checked_against_the_family(
    family: Family, axes: list[Axis], refusal: str | None
) -> None:
    if refusal is None:
        check_family_axes(axes, family)
        return
    with pytest.raises(UserInputError) as refused:
        check_family_axes(axes, family)
    assert refusal in str(refused.value)


def _model(name: str, family: Family) -> Model:
    return Model(name=name, source=name, kind=JobKind.TEXT_TO_IMAGE, family=family)


def test_a_model_axis_compares_one_family_and_names_them_when_mixed() -> None:
    assert one_family([_model("xl-a", SDXL), _model("xl-b", SDXL)]) is SDXL
    with pytest.raises(UserInputError) as refused:
        one_family([_model("sd15", SD), _model("schnell", FLUX)])
    assert "sd15 (Stable Diffusion 1.x/2.x), schnell (FLUX.1 schnell)" in str(refused.value)


@pytest.mark.parametrize(
    ("family", "actions", "steps", "schedulers"),
    [
        (SD, ("cfg", "steps", "sched", "denoise"), (10, 15, 25, 50), 5),
        (SDXL, ("cfg", "steps", "sched", "denoise"), (10, 15, 25, 50), 5),
        # No guidance, one sampler; the course's step counts are past schnell's 1-4.
        (FLUX, ("steps", "denoise"), (1, 2, 3, 4), 1),
    ],
)
def test_lessons_fit_the_family(
    family: Family, actions: tuple[str, ...], steps: tuple[int, ...], schedulers: int
) -> None:
    course = CourseSettings()
    assert lesson_actions(family) == actions
    assert values_for("steps", parent(steps=4), course, family) == steps
    assert len(values_for("schedulers", parent(), course, family)) == schedulers
    assert applies("guidance", family) is (family is not FLUX)


def test_every_panel_keeps_a_denoising_step_at_the_familys_steps() -> None:
    check_denoising_left_on_axes([Axis("strength", (0.3, 0.9))], 30, 0.5)  # SD's 30 steps
    with pytest.raises(
        UserInputError, match=re.escape("strength 0.2 and 4 steps, no denoising step")
    ):
        check_denoising_left_on_axes([Axis("strength", (0.2, 0.9))], 4, 0.5)  # FLUX's 4
    with pytest.raises(
        UserInputError, match=re.escape("strength 0.5 and 1 step, no denoising step")
    ):
        check_denoising_left_on_axes([Axis("steps", (1, 4))], 4, 0.5)


def test_flux_steps_lesson_says_what_a_distilled_model_does() -> None:
    job = parent(id=3, parent_job_id=1, comparison="steps", comparison_values=[1, 4], seeds=[42])
    result = Result(3, (GeneratedImage(42, b"", False),) * 2, None, 1.5)
    assert "distilled to finish in 1–4 steps" in caption(job, result, None, family=FLUX)
    assert "经过蒸馏" in caption(job, result, "zh-CN", family=FLUX)
    assert "the course compares 15 with 50" in caption(job, result, None, family=SDXL)
