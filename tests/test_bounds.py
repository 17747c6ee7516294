"""Every user-facing bound is declared once (engine.protocol.BOUNDS), and everything reads it."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.jobs.xy_values import Axis, check_grid
from bot.ui import validation
from bot.ui.errors import UserInputError
from engine.protocol import BOUNDS, SIZES, Bound, BoundWithDefault, number_text

ROOT = Path(__file__).resolve().parents[1]
STEPS_LINE = "    steps: BoundWithDefault[int] = BoundWithDefault(1, 100, default=30)\n"


def test_a_bound_can_be_narrowed_but_never_widened() -> None:
    steps = BOUNDS.narrowed(steps=20).steps
    assert (steps.min, steps.max, steps.default) == (1, 20, 20)  # the default comes down
    assert BOUNDS.narrowed(steps=60).steps.default == BOUNDS.steps.default
    for too_far in (BOUNDS.steps.max + 1, BOUNDS.steps.min - 1):
        with pytest.raises(ValueError, match="must be from 1 to 100"):
            BOUNDS.narrowed(steps=too_far)
    assert BOUNDS.narrowed() == BOUNDS


def test_membership_is_for_numbers_within_the_bound() -> None:
    assert 7.5 in BOUNDS.guidance and 30 in BOUNDS.guidance
    assert math.nan not in BOUNDS.guidance and math.inf not in BOUNDS.guidance
    assert True not in BOUNDS.steps and "5" not in BOUNDS.steps  # type: ignore[operator]
    with pytest.raises(ValueError):
        Bound(5, 1)
    with pytest.raises(ValueError):
        BoundWithDefault(1, 5, default=6)


def test_every_size_fits_the_side_bound() -> None:
    for size in SIZES.values():
        for side in (size.width, size.height):
            assert side in BOUNDS.side and side % BOUNDS.side_multiple == 0
        assert size.label.endswith(f"{size.width}×{size.height}")
    assert number_text(0.0) == "0" and number_text(2**32 - 1) == "4294967295"


def _refusal(check: Callable[[], object]) -> str:
    with pytest.raises(UserInputError) as refused:
        check()
    return str(refused.value)


def test_readme_bad_input_table_quotes_the_declared_bounds() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Bad input, and what the user sees")[1].split("\n## ")[0]
    over = BOUNDS.count.max + 1
    quoted = {
        # what a user types -> the refusal the bot sends, as README must quote it
        f"steps 0, {BOUNDS.steps.max + 1}": _refusal(lambda: validation.check_steps(0)),
        "guidance out of range": _refusal(lambda: validation.check_guidance(math.nan)),
        f"count 0 or {over}": _refusal(lambda: validation.check_count(over)),
        f"seed below 0 or over {BOUNDS.seed.max}": _refusal(lambda: validation.check_seed(-1)),
        f"inpainting strength below {number_text(BOUNDS.strength.min)} or over "
        f"{number_text(BOUNDS.strength.max)}": _refusal(lambda: validation.check_strength(0.0)),
        f"a LoRA weight below {number_text(BOUNDS.lora_weight.min)} or over "
        f"{number_text(BOUNDS.lora_weight.max)}": _refusal(
            lambda: validation.check_prompt_syntax("a fox <lora:ink:3>", what="prompt")
        ),
        f"image-to-image strength below {number_text(BOUNDS.image_strength.min)} or over "
        f"{number_text(BOUNDS.image_strength.max)}": _refusal(
            lambda: validation.check_image_strength(0.01)
        ),
        # /compare: three columns and just enough rows to pass the most panels.
        f"a `/compare` grid of more than {BOUNDS.compare_panels.max} panels": _refusal(
            lambda: check_grid(
                Axis("steps", (1, 2, 3)),
                Axis("seed", tuple(range(BOUNDS.compare_panels.max // 3 + 1))),
            )
        ),
    }
    for typed, message in quoted.items():
        assert f"| {typed}" in table and f'"{message}"' in table, message
    prompt, mask = BOUNDS.prompt_chars.max, BOUNDS.mask_prompt_chars.max
    assert f"| prompt over {prompt} characters | " in table
    assert f"the most is {prompt}. …" in table and f"the most is {mask}. …" in table
    assert f"mask_prompt over {mask} characters" in table


def test_readme_configuration_table_quotes_the_protocols_maxima() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if "`LIMITS_MAX_STEPS`" in line)
    maxima = [BOUNDS.prompt_chars.max, BOUNDS.steps.max, BOUNDS.guidance.max, BOUNDS.count.max]
    assert ", ".join(number_text(m) for m in maxima) + " (the protocol's)" in row


# Run in a fresh interpreter against a copy of engine/ whose protocol.py differs by one line.
_AFTER_ONE_LINE = textwrap.dedent(
    """
    import engine.protocol
    from bot.ui import validation
    from bot.settings import CourseSettings, LimitSettings
    from bot.ui import options
    from bot.ui.errors import UserInputError
    from bot.features.imagine._cog import ImagineCog
    from engine.cli import _parser
    from engine.protocol import JobKind, JobSpec, ModelRef
    from engine.settings import EngineSettings
    from engine.tasks.checks import BadInput, check_job

    assert engine.protocol.__file__.startswith({copy!r}), engine.protocol.__file__
    try:
        validation.check_steps(51)
        raise SystemExit("the bot took 51 steps")
    except UserInputError as refused:
        assert "between 1 and 50" in str(refused), refused
    assert options.StepsOption().max_value == 50
    assert ImagineCog.imagine._params["steps"].max_value == 50
    assert LimitSettings(_env_file=None).bounds().steps.max == 50
    try:
        LimitSettings(_env_file=None, max_steps=60)
        raise SystemExit("an operator widened steps to 60")
    except ValueError:
        pass
    CourseSettings(_env_file=None)  # the course's 10/15/25/50 still fit
    spec = JobSpec(
        job_id=1, kind=JobKind.TEXT_TO_IMAGE, model=ModelRef("m", "m"), prompt="p",
        seeds=(1,), steps=51,
    )
    try:
        check_job(spec, EngineSettings(_env_file=None))
        raise SystemExit("the engine took 51 steps")
    except BadInput as refused:
        assert "from 1 to 50" in str(refused), refused
    (commands,) = _parser()._subparsers._group_actions
    assert "1 to 50 (default 30)" in commands.choices["generate"].format_help()
    print("ok")
    """
)


def test_changing_max_steps_is_a_one_line_change(tmp_path: Path) -> None:
    """Edit one line of engine/protocol.py: the bot, its options, the course validators, the
    engine's checks and its command line all follow."""
    shutil.copytree(ROOT / "engine", tmp_path / "engine", ignore=shutil.ignore_patterns("*.pyc"))
    protocol = tmp_path / "engine" / "protocol.py"
    text = protocol.read_text(encoding="utf-8")
    assert text.count(STEPS_LINE) == 1
    protocol.write_text(text.replace(STEPS_LINE, STEPS_LINE.replace("100", "50")), "utf-8")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    script = _AFTER_ONE_LINE.format(copy=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
