"""A new job's settings fitted to its model's family (bot.jobs.families), before it exists."""

from __future__ import annotations

import re

import pytest

from bot.jobs.families import family_settings
from bot.ui.errors import UserInputError
from engine.protocol import BOUNDS, Family, JobKind

# What /imagine hands over when the user typed only a prompt: SD 1.x's defaults.
TYPED_NOTHING = {
    "prompt": "a fox",
    "negative_prompt": "",
    "steps": BOUNDS.steps.default,
    "guidance": BOUNDS.guidance.default,
    "width": 512,
    "height": 512,
    "scheduler": BOUNDS.scheduler,
}


def test_left_out_options_come_from_the_family():
    flux = family_settings(Family.FLUX, JobKind.TEXT_TO_IMAGE, TYPED_NOTHING, set())
    assert (flux["steps"], flux["guidance"], flux["width"], flux["height"]) == (4, 0.0, 1024, 1024)
    wide = {**TYPED_NOTHING, "width": 896, "height": 512}
    sdxl = family_settings(Family.SDXL, JobKind.TEXT_TO_IMAGE, wide, {"size"})
    assert (sdxl["steps"], sdxl["guidance"], sdxl["width"], sdxl["height"]) == (30, 7.0, 1344, 768)
    # SD 1.x's are the commands' own (LIMITS_* already applied): unchanged.
    assert family_settings(Family.SD, JobKind.TEXT_TO_IMAGE, TYPED_NOTHING, set()) == TYPED_NOTHING
    # An operator's narrower maximum holds for a family's default too.
    narrow = BOUNDS.narrowed(steps=20)
    assert (
        family_settings(Family.SDXL, JobKind.TEXT_TO_IMAGE, TYPED_NOTHING, (), narrow)["steps"]
        == 20
    )


@pytest.mark.parametrize(
    ("family", "typed", "message"),
    [
        (Family.FLUX, {"steps": 8}, "between 1 and 4 for FLUX.1 schnell (you gave 8)"),
        (Family.FLUX, {"scheduler": "ddim"}, "FLUX.1 schnell runs only its own sampler (Euler)"),
        (Family.FLUX, {"guidance": 3.0}, "FLUX.1 schnell takes no guidance"),
        (Family.FLUX, {"negative_prompt": "dark"}, "FLUX.1 schnell takes no negative prompt"),
        (Family.FLUX, {"prompt": "a (fox:1.3)"}, "FLUX.1 schnell does not read prompt weights"),
    ],
)
def test_a_typed_option_the_family_does_not_take_is_refused_naming_it(family, typed, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        family_settings(family, JobKind.TEXT_TO_IMAGE, {**TYPED_NOTHING, **typed}, set(typed))


def test_sdxl_takes_weighted_prompts():
    typed = {"prompt": "a (fox:1.3)", "negative_prompt": "[dark]"}
    fitted = family_settings(Family.SDXL, JobKind.TEXT_TO_IMAGE, {**TYPED_NOTHING, **typed}, ())
    assert (fitted["prompt"], fitted["negative_prompt"]) == ("a (fox:1.3)", "[dark]")


def test_a_family_without_a_kind_of_job_is_refused_for_it():
    with pytest.raises(UserInputError, match=r"FLUX\.1 schnell models do not do depth-to-image"):
        family_settings(Family.FLUX, JobKind.DEPTH_TO_IMAGE, TYPED_NOTHING, set())
