"""Every declared generation parameter has a home in each shape a job takes.

``engine.protocol.GenerationParams`` is the one declaration. ``NewJob`` and ``JobSpec`` inherit
it; the job row and the migrations cannot, so these tests check them against it. A parameter
added to the declaration and forgotten elsewhere fails here with its name.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Float, Integer, String, inspect

from bot.store.models import Job, parameter_columns
from bot.store.repository import Limits, NewJob
from engine.protocol import GENERATION_PARAMS, GenerationParams, JobKind, JobSpec
from tests.fixtures.generation_params import DECLARED, DEFAULTS, base_type, other_values

UNLIMITED = Limits(max_queued_jobs=None, images_per_hour=None)
# The column type each declared Python type is stored as (tuples as JSON lists).
STORED_AS: dict[type, type] = {str: String, int: Integer, float: Float, tuple: JSON}


def asked(**fields: Any) -> NewJob:
    """A job with every generation parameter away from its default."""
    values = other_values()
    values.update(
        user_id=1,
        user_name="ada",
        kind=JobKind.INPAINT,
        model_name="m",
        model_source="/models/m",
        model_revision=None,
        channel_id=5,
        image_ref="ab/cd.png",
    )
    values.update(fields)
    return NewJob(**values)


@pytest.mark.parametrize("shape", [NewJob, JobSpec])
def test_new_jobs_and_specs_carry_every_parameter_as_declared(shape: type) -> None:
    assert issubclass(shape, GenerationParams)
    hints = typing.get_type_hints(shape)
    fields = {f.name: f for f in dataclasses.fields(shape)}
    for name in GENERATION_PARAMS:
        # Not redeclared with another type or default (a subclass may shadow a field).
        assert hints[name] == DECLARED[name], name
        assert fields[name].default == DEFAULTS[name], name


@pytest.mark.parametrize("name", GENERATION_PARAMS)
def test_the_job_row_has_a_column_of_a_compatible_type(name: str) -> None:
    column = Job.__table__.columns.get(name)
    assert isinstance(column, Column), f"Job has no column for the parameter {name!r}"
    kind, optional = base_type(DECLARED[name])
    assert isinstance(column.type, STORED_AS[kind]), (name, column.type)
    assert column.nullable == optional, f"{name}: nullable must match `| None` in the declaration"
    if column.default is not None:
        assert column.default.arg == DEFAULTS[name], name


async def test_the_migrated_jobs_table_has_every_parameter(db_engine) -> None:
    async with db_engine.connect() as connection:
        columns = await connection.run_sync(
            lambda sync: {c["name"]: c for c in inspect(sync).get_columns("jobs")}
        )
    for name in GENERATION_PARAMS:
        assert name in columns, f"no migration adds jobs.{name}"
        assert columns[name]["nullable"] == base_type(DECLARED[name])[1], name


def test_columns_and_params_convert_tuples_and_lists_both_ways() -> None:
    new = asked()
    columns = parameter_columns(new)
    assert set(columns) == set(GENERATION_PARAMS)
    assert columns["seeds"] == [3, 4]
    assert Job(**columns).generation_params() == {
        name: getattr(new, name) for name in GENERATION_PARAMS
    }


async def test_a_stored_job_keeps_every_parameter(repo) -> None:
    new = asked()
    job = await repo.create_job(new, UNLIMITED)
    loaded = await repo.get_job(job.id)
    for row in (job, loaded):
        assert row.generation_params() == {name: getattr(new, name) for name in GENERATION_PARAMS}
    assert loaded.seeds == [3, 4]  # stored as a JSON list, as before
