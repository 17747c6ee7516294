"""What users type and click, one package per command group.

Each package has ``async def setup(bot, services)``: it adds its cogs, persistent buttons and
button actions, using only the narrow ``bot.services.Services`` handle. ``bot.app`` calls them
in this order (the order commands are registered in).
"""

from types import ModuleType

from bot.features import (
    admin,
    compare,
    course,
    depth,
    history,
    imagine,
    inpaint,
    job_buttons,
    moderation,
    recipe,
    reroll,
    suggest,
)

ALL: tuple[ModuleType, ...] = (
    imagine,
    compare,
    history,
    inpaint,
    depth,
    reroll,
    admin,
    suggest,
    recipe,
    job_buttons,
    course,
    moderation,
)
