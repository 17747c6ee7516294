"""/models and /status through the Discord stub, with the real engine on tiny models."""

import asyncio

import discord
import pytest

from bot.store.models import JobStatus
from engine.protocol import JobKind
from tests.bot.e2e.harness import CHANNEL, Harness, make_settings
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, has_png, imagine
from tests.discord_stub import CallbackType, DiscordStub, GuildSpec

ADMIN_ROLE = "Course Admin"


async def models(stub, subcommand, user, **options):
    return await stub.invoke_slash(f"models {subcommand}", options, user=user, channel=CHANNEL)


async def private(handle, fragment, within=10.0) -> str:
    """The text of the command's private answer once it contains ``fragment``."""
    message = await handle.wait_for_message(lambda m: fragment in m.content, timeout=within)
    assert message.is_ephemeral, message.content
    return message.content


async def loaded_names(bot) -> set[str]:
    return {m.model.name for m in (await bot.engine.list_models()).loaded}


async def test_admin_adds_loads_switches_default_and_generates_with_each(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        prof, student = stub.add_user("prof", roles=[ADMIN_ROLE]), stub.add_user("ada")

        added = await models(
            stub,
            "add",
            prof,
            name="tiny-copy",
            source=str(harness.tiny.text_to_image),
            kind="text_to_image",
        )
        text = await private(added, "Added")
        assert "**tiny-copy** (text-to-image)" in text and "/models load tiny-copy" in text

        listing_handle = await stub.invoke_slash("models-list", user=student, channel=CHANNEL)
        listing = await private(listing_handle, "**Models**")
        assert "**tiny-copy**" in listing and "**tiny-sd** · default" in listing
        assert "**tiny-sd-inpainting** · default" in listing.split("__Inpainting__")[1]
        assert str(harness.tiny.text_to_image) not in listing  # paths are for admins

        # A load that takes a while shows a clock until the outcome replaces it.
        cog = bot.get_cog("ModelsCog")
        cog.progress_every_s = 0.05
        load_model = bot.engine.load_model

        async def slow_load(model, kind):
            await asyncio.sleep(0.5)
            return await load_model(model, kind)

        bot.engine.load_model = slow_load
        loading = await models(stub, "load", prof, name="tiny-copy")
        text = await private(loading, "Loaded **tiny-copy**", within=RESULT_TIMEOUT)
        assert any("⏳ Loading **tiny-copy**… 0." in (m.content or "") for m in loading.messages)
        assert " MB." in text.splitlines()[0] and "tiny-copy (" in text.splitlines()[1]
        assert "tiny-copy" in await loaded_names(bot)

        result = await (await imagine(stub, student, model="tiny-copy")).wait_for_message(
            has_png, timeout=RESULT_TIMEOUT
        )
        assert "model tiny-copy" in result.content

        switched = await private(await models(stub, "default", prof, name="tiny-copy"), "✅")
        assert "**tiny-copy** is now the default text-to-image model (was tiny-sd)" in switched
        for model, expected in [(None, "tiny-copy"), ("tiny-sd", "tiny-sd")]:
            options = {"model": model} if model else {}
            handle = await imagine(stub, student, **options)
            result = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
            assert f"model {expected}" in result.content

        entries = await bot.repo.latest_audit(10)
        assert [(e.action, e.target, e.ok, e.actor_name) for e in entries] == [
            ("models.default", "tiny-copy", True, "prof"),
            ("models.load", "tiny-copy", True, "prof"),
            ("models.add", "tiny-copy", True, "prof"),
        ]
        assert entries[0].outcome == "now the text-to-image default (was tiny-sd)"
        assert entries[1].outcome.startswith("loaded in ")
        assert entries[2].outcome.endswith(f"from {harness.tiny.text_to_image.resolve()}")

        log = await private(await models(stub, "log", prof), "Latest admin actions")
        lines = log.splitlines()[1:]
        assert len(lines) == 3 and all(f"<@{prof.id}> (prof)" in line for line in lines)
        assert "**models.default** `tiny-copy`" in lines[0] and lines[0].startswith("✅ <t:")
        assert len(await bot.repo.latest_audit(10)) == 3  # reading the log is not logged


async def test_unload_and_disable_let_queued_jobs_finish_first(harness):
    async with harness.bot() as bot:
        stub = harness.stub
        prof, student = stub.add_user("prof", roles=[ADMIN_ROLE]), stub.add_user("bo")
        await bot.repo.add_model(
            "tiny-copy", str(harness.tiny.text_to_image), JobKind.TEXT_TO_IMAGE
        )
        await private(await models(stub, "load", prof, name="tiny-sd"), "Loaded", RESULT_TIMEOUT)

        await bot.scheduler.pause()  # jobs stay queued until the test lets them run
        first = await imagine(stub, student, prompt="first")
        second = await imagine(stub, student, prompt="second", model="tiny-copy")
        for handle in (first, second):
            await handle.wait_for_message(lambda m: "Queued" in m.content)

        status = await private(await stub.invoke_slash("status", {}, user=prof), "Bot status")
        assert "queued 2 · running 0 · done 0" in status and "2 waiting in the scheduler" in status
        assert "**Running batch:** none" in status and "**Engine:** ready, up " in status
        assert f"pid {bot.engine.pid}" in status and "0 restarts" in status
        assert "**Loaded models:** tiny-sd (" in status
        assert "**Image storage:** ok" in status
        # Nothing made yet: the folders are empty (or not there), measured off the event loop.
        assert (
            "**Disk:** images 0 B in 0 files · uploads 0 B in 0 files · "
            "kept 30 days after last use (STORAGE_RETENTION_DAYS=30)"
        ) in status

        unloading = await models(stub, "unload", prof, name="tiny-sd")
        await private(unloading, "Waiting for 1 queued or running job for **tiny-sd**")
        assert "tiny-sd" in await loaded_names(bot)  # not while its job waits

        disabled = await private(await models(stub, "disable", prof, name="tiny-copy"), "✅")
        assert "1 queued job for it will still finish" in disabled
        refused = await imagine(stub, student, model="tiny-copy")
        assert "no text-to-image model called “tiny-copy”" in await private(refused, "model")

        await bot.scheduler.resume()
        for handle in (first, second):
            await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        done = await private(unloading, "Unloaded", RESULT_TIMEOUT)
        assert "Unloaded tiny-sd and freed " in done and "after 1 job for it finished" in done
        assert "tiny-sd" not in await loaded_names(bot)
        statuses = [(await bot.repo.get_job(n)).status for n in (1, 2)]
        assert statuses == [JobStatus.DONE, JobStatus.DONE]

        enabled = await private(await models(stub, "enable", prof, name="tiny-copy"), "✅")
        assert "**tiny-copy** is enabled" in enabled
        status = await private(await stub.invoke_slash("status", {}, user=prof), "Bot status")
        assert "queued 0 · running 0 · done 2" in status
        assert "**Images in the last hour:** 2" in status

        entries = {e.action: e for e in await bot.repo.latest_audit(10)}
        assert entries["models.unload"].outcome.startswith("Unloaded tiny-sd and freed")
        # The queued job ran first, on the loaded model; the unload came after it.
        assert (await bot.repo.get_job(1)).finished_at <= entries["models.unload"].at
        outcomes = {action: entry.outcome for action, entry in entries.items()}
        assert outcomes["models.disable"] == "disabled; 1 queued job for it will still finish"


async def test_bad_sources_and_wrong_kinds_get_clear_refusals(harness, tmp_path):
    not_a_pipeline = tmp_path / "just-a-folder"
    not_a_pipeline.mkdir()
    async with harness.bot() as bot:
        stub = harness.stub
        prof = stub.add_user("prof", roles=[ADMIN_ROLE])
        inpainting = str(harness.tiny.inpainting)
        for options, expected in [
            ({"source": "/no/such/folder"}, "There is no folder `/no/such/folder`"),
            ({"source": str(not_a_pipeline)}, "has no readable `model_index.json`"),
            ({"source": "not a model id"}, "neither a Hugging Face id"),
            ({"source": "org/../etc"}, "neither a Hugging Face id"),
            ({"source": inpainting}, "is an inpainting checkpoint"),
            ({"source": inpainting, "revision": "main", "kind": "inpaint"}, "only applies to"),
            ({"name": "no spaces please"}, "A model name is 1-50 characters"),
            ({"name": "tiny-sd"}, "A model named 'tiny-sd' already exists"),
        ]:
            options = {"name": "new", "source": "org/model", "kind": "text_to_image", **options}
            assert expected in await private(await models(stub, "add", prof, **options), expected)
        assert sorted(m.name for m in await bot.repo.list_models()) == [
            "stable-diffusion-x4-upscaler",  # offered on first start, never loaded here
            "tiny-sd",
            "tiny-sd-inpainting",
        ]

        # A well-formed Hugging Face id is only proven wrong by loading it (offline here).
        await private(
            await models(stub, "add", prof, name="ghost", source="nobody/ghost", kind="inpaint"),
            "Added **ghost**",
        )
        failed = await private(await models(stub, "load", prof, name="ghost"), "did not load")
        assert "The engine says: could not load the model ghost" in failed
        assert "Check that `nobody/ghost` exists on Hugging Face" in failed
        assert "Traceback" not in failed

        # A model stored with the wrong kind (not through /models add) fails to load, clearly.
        await bot.repo.add_model("mislabelled", inpainting, JobKind.TEXT_TO_IMAGE)
        failed = await private(await models(stub, "load", prof, name="mislabelled"), "did not load")
        assert "cannot make images from text alone" in failed
        assert "mislabelled" not in await loaded_names(bot)

        removed = await private(
            await models(stub, "remove", prof, name="ghost"), "Removed **ghost**:"
        )
        assert "ghost was not loaded" in removed and await bot.repo.get_model("ghost") is None
        refused = await private(await models(stub, "remove", prof, name="tiny-sd"), "default")
        assert "make another model the default first" in refused

        entries = await bot.repo.latest_audit(20)
        failures = [(e.action, e.target) for e in entries if not e.ok]
        assert failures.count(("models.add", "new")) == 6
        assert ("models.load", "ghost") in failures and ("models.remove", "tiny-sd") in failures
        load = next(e for e in entries if e.action == "models.load" and e.target == "mislabelled")
        assert "cannot make images from text alone" in load.outcome


@pytest.fixture
async def roles_harness(tmp_path, tiny_models, engine_forkserver):
    """A server whose admin role has no permissions, and a moderator role with Manage Server."""
    manage_guild = discord.Permissions(manage_guild=True).value
    spec = GuildSpec(roles={ADMIN_ROLE: 0, "Moderator": manage_guild})
    async with DiscordStub(guilds=[spec]) as stub:
        settings = make_settings(tmp_path, stub, tiny_models)
        yield Harness(
            tmp_path, stub, tiny_models, settings, engine_command=engine_forkserver.command
        )


ADMIN_COMMANDS = [
    ("models add", {"name": "x", "source": "org/x", "kind": "text_to_image"}),
    ("models load", {"name": "tiny-sd"}),
    ("models unload", {"name": "tiny-sd"}),
    ("models default", {"name": "tiny-sd"}),
    ("models enable", {"name": "tiny-sd"}),
    ("models disable", {"name": "tiny-sd"}),
    ("models remove", {"name": "tiny-sd"}),
    ("models log", {}),
    ("status", {}),
]


async def test_every_admin_command_refuses_non_admins_and_changes_nothing(roles_harness):
    harness = roles_harness
    async with harness.bot() as bot:
        stub = harness.stub
        student = stub.add_user("student")
        before = [(m.name, m.enabled, m.is_default) for m in await bot.repo.list_models()]
        # Discord hides these from members without Manage Server, but a server owner may show
        # them to anyone: the bot decides in code.
        for command, options in ADMIN_COMMANDS:
            handle = await stub.invoke_slash(command, options, user=student, channel=CHANNEL)
            text = await private(handle, "Only admins")
            assert "Nothing was changed" in text, command
            # Refused at once: nothing was deferred or started first.
            assert handle.response_type is CallbackType.CHANNEL_MESSAGE, command
        after = [(m.name, m.enabled, m.is_default) for m in await bot.repo.list_models()]
        assert after == before
        refusals = await bot.repo.latest_audit(20)
        assert sorted(e.action for e in refusals) == sorted(
            "models." + c.split()[1] if c != "status" else "status" for c, _ in ADMIN_COMMANDS
        )
        assert all(
            (e.ok, e.outcome, e.actor_id) == (False, "refused: not an admin", student.id)
            for e in refusals
        )
        choices = await stub.autocomplete(
            "models load", {"name": "tiny"}, focused="name", user=student
        )
        assert choices == []  # model names are not offered to non-admins either

        # The configured role counts without any permission; Manage Server counts without it.
        teacher = stub.add_user("teacher", roles=[ADMIN_ROLE])
        moderator = stub.add_user("mod", roles=["Moderator"])
        choices = await stub.autocomplete(
            "models load", {"name": "tiny"}, focused="name", user=teacher
        )
        assert [c["value"] for c in choices] == ["tiny-sd", "tiny-sd-inpainting"]
        assert choices[0]["name"] == "tiny-sd (text-to-image, default)"
        log = await private(await models(stub, "log", teacher), "Latest admin actions")
        assert "⛔" in log and "refused: not an admin" in log
        status = await stub.invoke_slash("status", {}, user=moderator, channel=CHANNEL)
        assert "**Jobs:**" in await private(status, "Bot status")
