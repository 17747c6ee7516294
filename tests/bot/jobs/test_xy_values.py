"""/compare's axes as typed: values parsed and checked, refusals that name the bad value."""

from __future__ import annotations

import pytest

from bot.jobs import xy_plot
from bot.jobs.xy_values import Axis, check_grid, parse_axis
from bot.store.repository import NewJob
from bot.ui.errors import UserInputError
from tests.bot.features.recipe.test_script import make_job


@pytest.mark.parametrize(
    ("kind", "text", "values"),
    [
        ("guidance", "3, 7.5，12,", (3.0, 7.5, 12.0)),  # a Chinese comma, a trailing comma
        ("steps", "10,20", (10, 20)),
        ("scheduler", "Euler a, ddim, DPM++ 2M Karras", ("euler_a", "ddim", "dpmpp_2m_karras")),
        ("seed", "0, 4294967295", (0, 4294967295)),
        ("strength", "0.3、0.75", (0.3, 0.75)),
        ("model", "sd15, anything-v5", ("sd15", "anything-v5")),
    ],
)
def test_values_are_read_in_the_order_typed(kind: str, text: str, values: tuple):
    assert parse_axis(kind, text, "x_values") == Axis(kind, values)


@pytest.mark.parametrize(
    ("kind", "text", "refusal"),
    [
        (
            "guidance",
            "5, abc",
            "x_values: “abc” is not a number; guidance values are numbers between 0 and 30.",
        ),
        ("guidance", "nan", "x_values: “nan” is not a number"),
        ("guidance", "31", "x_values: guidance 31 is out of range; guidance values are numbers"),
        ("steps", "7.5", "x_values: “7.5” is not a whole number; steps values are whole numbers"),
        ("steps", "0, 5", "steps 0 is out of range; steps values are whole numbers between 1 and"),
        ("strength", "0.01", "strength 0.01 is out of range; strength values are numbers between"),
        ("scheduler", "euler, heun", "x_values: there is no scheduler “heun”; they are: Euler,"),
        ("guidance", "7.5, 7.50", "x_values: “7.50” is the same guidance as “7.5”"),
        ("model", "SD15, sd15", "“sd15” is the same model as “SD15”"),
        ("steps", " , ", "x_values is empty"),
        ("colour", "red", "There is no axis “colour”"),
    ],
)
def test_bad_values_are_refused_naming_the_value(kind: str, text: str, refusal: str):
    with pytest.raises(UserInputError) as raised:
        parse_axis(kind, text, "x_values")
    assert refusal in str(raised.value)


@pytest.mark.parametrize(
    ("x", "y", "refusal"),
    [
        (
            Axis("steps", (1, 2, 3)),
            Axis("seed", (1, 2, 3, 4, 5, 6)),
            "3 × 6 = 18 panels; the most is 16",
        ),
        (Axis("seed", tuple(range(17))), None, "17 panels; the most is 16"),
        (Axis("guidance", (5.0,)), Axis("guidance", (7.0, 8.0)), "x and y are both guidance"),
        (Axis("guidance", (5.0,)), None, "a comparison needs at least 2"),
    ],
)
def test_grids_too_big_too_small_or_on_one_setting_twice_are_refused(x, y, refusal: str):
    with pytest.raises(UserInputError) as raised:
        check_grid(x, y)
    assert refusal in str(raised.value)


def test_a_grid_counts_every_panel_and_finds_the_plain_picture_among_them(tmp_path):
    axes = [Axis("guidance", (3.0, 7.5)), Axis("scheduler", ("ddim", "euler"))]
    values = xy_plot.stored(axes)
    new = NewJob(
        user_id=1,
        user_name="ada",
        kind="text_to_image",
        model_name="m",
        model_source="s",
        model_revision=None,
        channel_id=1,
        prompt="a fox",
        seeds=(42,),
        comparison="xy",
        comparison_values=tuple(values),
    )
    assert new.image_count == 4
    job = make_job(1, tmp_path, comparison="xy", comparison_values=values)
    panels = xy_plot.variants(job)
    assert [(v.guidance, v.scheduler) for v in panels] == [
        (3.0, "ddim"),
        (7.5, "ddim"),
        (3.0, "euler"),
        (7.5, "euler"),
    ]
    assert panels[0].label == "CFG: 3, Sampler: DDIM"
    assert xy_plot.default_panel(job) == 3  # /imagine's CFG 7.5 with Euler
    assert xy_plot.labels(job, "zh-CN") == (
        ["引导系数: 3", "引导系数: 7.5"],
        ["调度器: DDIM", "调度器: Euler"],
    )
