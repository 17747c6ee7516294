"""Option types carry the bounds to Discord, check them, and follow an operator's narrowing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import create_autospec

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.features.imagine import ImagineCog
from bot.features.inpaint import InpaintCog
from bot.services import Services
from bot.ui import options
from bot.ui.errors import UserInputError
from bot.ui.i18n import CourseTranslator, make_translatable
from engine.protocol import BOUNDS, SIZES, Size


@pytest.fixture
async def bot() -> AsyncIterator[commands.Bot]:
    """The real /imagine and /inpaint declarations; nothing here runs their bodies."""
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    services = create_autospec(Services, instance=True)
    await bot.add_cog(ImagineCog(services))
    await bot.add_cog(InpaintCog(services))
    yield bot
    await bot.close()


def payload_options(bot: commands.Bot, name: str = "imagine") -> dict[str, dict[str, Any]]:
    command = bot.tree.get_command(name)
    assert isinstance(command, app_commands.Command)
    return {o["name"]: o for o in command.to_dict(bot.tree)["options"]}


async def test_discord_is_shown_the_protocols_bounds(bot: commands.Bot) -> None:
    options.apply_bounds(bot.tree, BOUNDS)
    shown = payload_options(bot)
    assert (shown["steps"]["min_value"], shown["steps"]["max_value"]) == (1, BOUNDS.steps.max)
    assert shown["guidance"]["max_value"] == BOUNDS.guidance.max
    assert (shown["count"]["min_value"], shown["count"]["max_value"]) == (1, BOUNDS.count.max)
    assert shown["seed"]["max_value"] == BOUNDS.seed.max
    assert (shown["prompt"]["min_length"], shown["prompt"]["max_length"]) == (1, 1000)
    steps_help = shown["steps"]["description"]
    assert steps_help.startswith("Denoising steps, 1-100 (default 30; FLUX.1 schnell 1-4")
    assert [c["value"] for c in shown["size"]["choices"]] == list(SIZES)
    assert shown["size"]["choices"][1]["name"] == "Landscape 3:2, 768×512"
    inpaint = payload_options(bot, "inpaint")
    assert inpaint["mask_prompt"]["max_length"] == BOUNDS.mask_prompt_chars.max
    assert inpaint["strength"]["min_value"] == BOUNDS.strength.min
    assert inpaint["strength"]["description"].startswith("How much of the area to change, up to 1")
    texts = [o["description"] for o in [*shown.values(), *inpaint.values()]]
    assert not [text for text in texts if "{" in text]


async def test_narrowed_bounds_reach_the_payload_and_leave_the_class_alone(
    bot: commands.Bot,
) -> None:
    options.apply_bounds(bot.tree, BOUNDS.narrowed(steps=20, count=2, prompt_chars=300))
    shown = payload_options(bot)
    assert shown["steps"]["max_value"] == 20 and shown["count"]["max_value"] == 2
    assert shown["prompt"]["max_length"] == 300 and shown["negative_prompt"]["max_length"] == 300
    steps_help = shown["steps"]["description"]
    assert steps_help.startswith("Denoising steps, 1-20 (default 20; FLUX.1 schnell 1-4")
    command = bot.tree.get_command("imagine")
    assert isinstance(command, app_commands.Command)
    assert command._params["steps"].default == 20  # the default came down with the maximum
    # Another bot in the same process still gets the protocol's bounds.
    assert ImagineCog.imagine._params["steps"].max_value == BOUNDS.steps.max


async def test_values_are_checked_with_the_users_message(bot: commands.Bot) -> None:
    options.apply_bounds(bot.tree, BOUNDS.narrowed(steps=20))
    command = bot.tree.get_command("imagine")
    assert isinstance(command, app_commands.Command)
    params = command._params
    with pytest.raises(
        options.OptionError, match=r"^steps must be between 1 and 20 \(you gave 21\)"
    ):
        await params["steps"].transform(None, 21)  # type: ignore[arg-type]  # no interaction needed
    with pytest.raises(UserInputError, match="The prompt is empty") as refused:
        await params["prompt"].transform(None, " \x07 ")  # type: ignore[arg-type]
    assert isinstance(refused.value, app_commands.AppCommandError)  # handed on as it is
    assert await params["prompt"].transform(None, "a  fox\x00") == "a fox"  # type: ignore[arg-type]
    assert await params["size"].transform(None, "wide") == Size(896, 512, "Wide 16:9")  # type: ignore[arg-type]
    assert await params["seed"].transform(None, 7) == 7  # type: ignore[arg-type]


async def test_zh_cn_descriptions_quote_the_narrowed_range(bot: commands.Bot) -> None:
    options.apply_bounds(bot.tree, BOUNDS.narrowed(steps=50))
    make_translatable(bot.tree)
    command = bot.tree.get_command("imagine")
    assert isinstance(command, app_commands.Command)
    payload = await command.get_translated_payload(bot.tree, CourseTranslator())
    shown = {o["name"]: o for o in payload["options"]}
    assert shown["steps"]["description_localizations"]["zh-CN"].startswith(
        "去噪步数，1-50（默认 30）"
    )
    assert "1-4" in shown["count"]["description_localizations"]["zh-CN"]
    texts = [o["description"] for o in shown.values()]
    texts += [t for o in shown.values() for t in o.get("description_localizations", {}).values()]
    assert not [text for text in texts if "{" in text]


async def test_prompts_with_unreadable_weights_are_refused_but_mask_words_are_not(
    bot: commands.Bot,
) -> None:
    imagine = bot.tree.get_command("imagine")
    inpaint = bot.tree.get_command("inpaint")
    assert isinstance(imagine, app_commands.Command) and isinstance(inpaint, app_commands.Command)
    with pytest.raises(UserInputError, match=r"^The prompt has a “\(” at character 3 "):
        await imagine._params["prompt"].transform(None, "a (cat")  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match=r"^The negative prompt has the weight 9 at"):
        await imagine._params["negative_prompt"].transform(None, "(x:9)")  # type: ignore[arg-type]
    typed = r"a (cat:1.3) \(x\)"
    assert await imagine._params["prompt"].transform(None, typed) == typed  # type: ignore[arg-type]
    # CLIPSeg reads the mask words as they are: brackets there are no weights.
    assert await inpaint._params["mask_prompt"].transform(None, "the (dog") == "the (dog"  # type: ignore[arg-type]
