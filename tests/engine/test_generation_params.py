"""The batch key follows the declaration: a parameter is shared by a batch unless per image."""

from __future__ import annotations

import dataclasses

from engine.protocol import (
    SHARED_PARAMS,
    GenerationParams,
    JobKind,
    JobSpec,
    ModelRef,
)
from tests.fixtures.generation_params import other_values

BASE = JobSpec(
    job_id=1, kind=JobKind.TEXT_TO_IMAGE, model=ModelRef("m", "m"), prompt="p", seeds=(1,)
)


def test_the_pipeline_takes_prompts_seeds_and_masks_per_image_and_shares_the_rest() -> None:
    per_image = {
        f.name for f in dataclasses.fields(GenerationParams) if f.metadata.get("per_image")
    }
    # The inpainting composite is done per job, after the call.
    assert per_image == {"prompt", "seeds", "negative_prompt", "mask_prompt", "mask_blend"}
    assert SHARED_PARAMS == (
        "steps",
        "guidance",
        "width",
        "height",
        "scheduler",
        "strength",
        "noise_level",
    )


def test_jobs_differing_only_per_image_share_a_call_and_any_shared_difference_splits_them() -> None:
    for name, value in other_values().items():
        changed = dataclasses.replace(BASE, job_id=2, **{name: value})
        assert (changed.batch_key == BASE.batch_key) == (name not in SHARED_PARAMS), name
