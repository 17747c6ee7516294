"""zh-CN: the command catalog keeps Discord's rules, reaches the payload, and replies fall back."""

from __future__ import annotations

import re
import string
from unittest.mock import create_autospec

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.features.compare import CompareCog
from bot.features.depth import DepthCog
from bot.features.imagine import ImagineCog
from bot.features.inpaint import InpaintCog
from bot.services import Services
from bot.ui.i18n import MESSAGES, CourseTranslator, make_translatable, t
from bot.ui.i18n._commands import SHARED_OPTIONS, ZH_CN
from bot.ui.options import OPTION_HELP

NAME = re.compile(r"^[-_\w]{1,32}$")  # Discord's rule; \w is any script's letters and digits


def test_catalog_names_and_texts_keep_discords_rules():
    for command, entry in ZH_CN.items():
        names = [entry.name, *(name for name, _ in entry.options.values())]
        for name in names:
            assert NAME.match(name) and name == name.lower(), (command, name)
        texts = [entry.description, *(text for _, text in entry.options.values())]
        texts += list(entry.choices.values())
        for text in texts:
            assert 1 <= len(text) <= 100, (command, text)


def _fields(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_every_reply_has_both_languages_with_the_same_blanks():
    for key, texts in MESSAGES.items():
        assert set(texts) == {"en", "zh-CN"}, key
        assert _fields(texts["en"]) == _fields(texts["zh-CN"]), key


def test_replies_follow_the_readers_locale_and_fall_back_to_english():
    assert t("zh-CN", "recipe.no_job", job_id=3) == "任务 #3 不存在（可能已被删除）。"
    assert t(discord.Locale.chinese, "recipe.no_job", job_id=3).startswith("任务 #3")
    for other in ("fr", "zh-TW", None):  # Traditional Chinese readers get English, not zh-CN
        assert t(other, "recipe.no_job", job_id=3).startswith("Job #3 does not exist")


@pytest.fixture
async def tree():
    client = discord.Client(intents=discord.Intents.none())
    tree = app_commands.CommandTree(client)

    @tree.command(name="imagine", description="Make an image from a text prompt")
    @app_commands.describe(prompt="What to draw", size="Image size and shape")
    @app_commands.choices(size=[app_commands.Choice(name="Square 512×512", value="square")])
    async def imagine(interaction: discord.Interaction, prompt: str, size: str) -> None: ...

    @tree.command(name="untranslated", description="Nobody wrote Chinese for this")
    async def untranslated(interaction: discord.Interaction, thing: str) -> None: ...

    yield tree
    await client.close()


async def test_the_translator_fills_the_payload_for_zh_cn_only(tree):
    make_translatable(tree)
    translator = CourseTranslator()
    imagine = await tree.get_command("imagine").get_translated_payload(tree, translator)
    assert imagine["name_localizations"] == {"zh-CN": "生成图像"}
    assert imagine["description_localizations"] == {
        "zh-CN": "根据文字提示生成图像，或以一张图片为起点"
    }
    prompt, size = imagine["options"]
    assert prompt["name"] == "prompt"  # English stays the name
    assert prompt["name_localizations"] == {"zh-CN": "提示词"}
    assert size["choices"][0]["name_localizations"] == {"zh-CN": "正方形 512×512"}
    other = await tree.get_command("untranslated").get_translated_payload(tree, translator)
    assert other["name_localizations"] == {} and "name_localizations" not in other["options"][0]


async def test_an_option_shares_its_help_in_both_languages_or_in_neither():
    """A command that says an option in the shared English words says it in the shared zh-CN
    ones too, so a difference made on purpose is made in both languages."""
    assert set(SHARED_OPTIONS) == set(OPTION_HELP)
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    services = create_autospec(Services, instance=True)
    for cog in (ImagineCog, CompareCog, InpaintCog, DepthCog):
        await bot.add_cog(cog(services))
    used = set()
    for command in bot.tree.walk_commands():
        assert isinstance(command, app_commands.Command)
        zh_cn = ZH_CN[command.qualified_name].options
        for option in command.parameters:
            if option.name not in OPTION_HELP:
                continue
            english = option.description == OPTION_HELP[option.name]
            assert english == (zh_cn[option.name] == SHARED_OPTIONS[option.name]), (
                command.name,
                option.name,
            )
            used.update([option.name] if english else [])
    await bot.close()
    assert used == set(OPTION_HELP)  # every shared text is someone's
