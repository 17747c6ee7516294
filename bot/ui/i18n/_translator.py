"""Command localizations through discord.py's translator.

discord.py asks the tree's translator for every localizable string when it syncs, once per
locale, and puts the answers in the payload's ``name_localizations`` and
``description_localizations``. Commands and groups are always asked about; options and choices
only when their texts are ``locale_str``. ``make_translatable`` turns them into ``locale_str``
in place before the sync, so cogs are written with plain strings and need no i18n code of their
own: a new command is translated by adding its entry to ``bot.i18n._commands``.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.app_commands import (
    Choice,
    Command,
    Group,
    Parameter,
    TranslationContextLocation,
    TranslationContextTypes,
    locale_str,
)

from bot.ui.i18n._commands import CATALOGS, CommandText
from bot.ui.options import fill_bounds

log = logging.getLogger(__name__)


def make_translatable(tree: app_commands.CommandTree) -> None:
    """Make every option name and description and every choice of ``tree`` ask the translator.

    Uses discord.py's parameter objects directly (``_params``, ``_rename``, ``_locale_name``):
    there is no public setter, and without ``locale_str`` discord.py never asks. The e2e test of
    the synced payload fails if a discord.py release moves them.
    """
    for command in tree.walk_commands():
        if not isinstance(command, Command):
            continue
        for param in command._params.values():
            if not isinstance(param.description, locale_str):
                param.description = locale_str(param.description)
            if not isinstance(param._rename, locale_str):
                param._rename = locale_str(param.display_name)
            for choice in param.choices or ():
                if choice._locale_name is None:
                    choice._locale_name = locale_str(choice.name)


class CourseTranslator(app_commands.Translator):
    """Answers from ``bot.i18n._commands``; None (Discord shows English) for anything else."""

    async def translate(
        self,
        string: locale_str,
        locale: discord.Locale,
        context: TranslationContextTypes,
    ) -> str | None:
        catalog = CATALOGS.get(locale.value)
        if catalog is None:
            return None
        where, data = context.location, context.data
        if where is TranslationContextLocation.choice_name:
            assert isinstance(data, Choice)
            return catalog.choices.get(str(data.value))
        if where in (
            TranslationContextLocation.parameter_name,
            TranslationContextLocation.parameter_description,
        ):
            assert isinstance(data, Parameter)
            entry = catalog.commands.get(data.command.qualified_name)
            option = entry.options.get(data.name) if entry else None
            if option is None:
                return None
            if where is TranslationContextLocation.parameter_name:
                return option[0]
            # A bounded option's range and default, as its English description has them.
            return fill_bounds(option[1], data.min_value, data.max_value, data.default)
        if isinstance(data, Command | Group):
            entry = catalog.commands.get(data.qualified_name)
            return _command_text(entry, where)
        return None


def _command_text(entry: CommandText | None, where: TranslationContextLocation) -> str | None:
    if entry is None:
        return None
    if where in (TranslationContextLocation.command_name, TranslationContextLocation.group_name):
        return entry.name
    if where in (
        TranslationContextLocation.command_description,
        TranslationContextLocation.group_description,
    ):
        return entry.description
    return None
