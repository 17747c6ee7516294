"""Every reply stays within Discord's limits whatever users type, and commands declare where
they work and who sees them.

The stub refuses what Discord refuses (``tests/discord_stub/models/validation.py``); the
harness fails any test whose bot was refused for a form field (50035). Here the longest
inputs the bot accepts go through every reply they can reach.
"""

from __future__ import annotations

import discord

from engine.protocol import BOUNDS, JobKind
from tests.bot.e2e.harness import ADMIN_ROLE, CHANNEL
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine

LONGEST_PROMPT = " ".join(["a watercolor fox in the snow"] * 40)[: BOUNDS.prompt_chars.max]
LONGEST_NEGATIVE = " ".join(["blurry low quality"] * 60)[: BOUNDS.prompt_chars.max]
MESSAGE_LIMIT = 2000
ADMIN_ONLY = {"models", "status"}
MODERATORS_ONLY = {"moderation"}  # shown to Manage Messages; checked in code too


def within_limits(handle) -> None:
    """Nothing the bot sent for this interaction was refused, and every version fits."""
    assert handle.rejections == [], [r.describe() for r in handle.rejections]
    assert all(len(m.content or "") <= MESSAGE_LIMIT for m in handle.messages)


async def test_commands_say_where_they_work_and_admin_ones_are_hidden(harness):
    async with harness.bot():
        synced = {c["name"]: c for c in harness.stub.synced_commands(harness.stub.guild)}
        assert {"imagine", "inpaint", "reroll", "history", "recipe", "models-list"} < set(synced)
        for name, command in synced.items():
            assert command.get("contexts") == [0], name  # guild only, never in DMs
            hidden = command.get("default_member_permissions")  # bits, as text or a number
            manage_guild = discord.Permissions(manage_guild=True).value
            manage_messages = discord.Permissions(manage_messages=True).value
            expected = (
                manage_guild
                if name in ADMIN_ONLY
                else manage_messages
                if name in MODERATORS_ONLY
                else None
            )
            assert (None if hidden is None else int(hidden)) == expected, name
        assert "list" not in {o["name"] for o in synced["models"]["options"]}


async def test_the_longest_inputs_fit_every_reply(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("ada")
        admin = stub.add_user("prof", roles=[ADMIN_ROLE])
        handles = []

        made = await imagine(
            stub,
            student,
            prompt=LONGEST_PROMPT,
            negative_prompt=LONGEST_NEGATIVE,
            seed=BOUNDS.seed.max,
            count=BOUNDS.count.max,
        )
        result = await made.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        handles.append(made)
        job_id = (await bot.repo.history(student.id, limit=1))[0].id

        # Details: two 1000-character prompts and every parameter (2,982 characters before).
        details = await stub.click(result, f"job:details:{job_id}", user=student)
        text = await ephemeral_text(details)
        assert text.startswith(f"**Job:** #{job_id}") and f"`/recipe {job_id}`" in text
        handles.append(details)

        history = await stub.invoke_slash("history", user=student, channel=CHANNEL)
        assert f"**#{job_id}**" in await ephemeral_text(history)
        # Answered by editing the deferral, not by a followup that Discord lets replace it.
        assert history.followups == [] and history.edits
        handles.append(history)

        recipe = await stub.invoke_slash("recipe", {"job": job_id}, user=student, channel=CHANNEL)
        await recipe.wait_for_message(lambda m: bool(m.attachments))
        handles.append(recipe)

        # Forty models with the longest names and long sources.
        for n in range(40):
            name = f"model-{n:02d}-" + "x" * 41
            await bot.repo.add_model(name, "org/" + "s" * 90 + f"{n}", JobKind.TEXT_TO_IMAGE)

        # A client may send any length: a 2000-character model name, and a job that is none.
        long_name = "m" * 2000
        refusal = await stub.invoke_slash(
            "imagine",
            {"prompt": "a fox", "model": long_name},
            user=student,
            channel=CHANNEL,
            validate=False,
        )
        text = await ephemeral_text(refusal)
        assert "There is no text-to-image model called “mmm" in text and "and 31 more." in text
        handles.append(refusal)

        load = await stub.invoke_slash(
            "models load", {"name": long_name}, user=admin, channel=CHANNEL, validate=False
        )
        text = await ephemeral_text(load)
        # 33: the tiny models, and the x4 upscaler every e2e bot offers on first start.
        assert text.startswith("There is no model named “mmm") and "and 33 more." in text
        # A refusal after the deferral replaces its "thinking…" by an edit.
        assert load.followups == []
        handles.append(load)

        listing = await stub.invoke_slash("models-list", user=admin, channel=CHANNEL)
        assert (await ephemeral_text(listing)).startswith("**Models**")
        handles.append(listing)

        reroll = await stub.invoke_slash(
            "reroll", {"job": "fox " * 25}, user=student, channel=CHANNEL
        )
        assert (await ephemeral_text(reroll)).startswith("Job “fox fox")
        handles.append(reroll)

        for handle in handles:
            within_limits(handle)
