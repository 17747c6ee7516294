"""The stub against the real discord.py client: connect, sync, interact, fail, reconnect."""

from __future__ import annotations

import asyncio
import io
import json
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_stub import (
    CallbackType,
    DiscordStub,
    EventKind,
    InteractionType,
    StubTimeout,
    png_bytes,
)

pytestmark = pytest.mark.timeout(30)

MODELS = ["sd-turbo", "sd-1.5", "sdxl", "kandinsky"]
RESULT_PNG = png_bytes(16, 8)


class RerollButton(discord.ui.DynamicItem[discord.ui.Button], template=r"reroll:(?P<job>\d+)"):
    """A persistent button whose custom id carries the job id (survives restarts)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Reroll", custom_id=f"reroll:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> RerollButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"Rerolling job {self.job_id}", view=None)


class HistoryView(discord.ui.View):
    """A classic persistent view registered with ``add_view``."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="History", custom_id="history:open")
    async def history(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message("Your history", ephemeral=True)


class PickView(discord.ui.View):
    """A short-lived view sent with the response (tracked by the response's message id)."""

    @discord.ui.select(
        custom_id="pick:model", options=[discord.SelectOption(label=m, value=m) for m in MODELS]
    )
    async def pick(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.defer()  # on a component: deferred update (type 6)
        await interaction.edit_original_response(content=f"Picked {select.values[0]}", view=None)


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    comment = discord.ui.TextInput(label="Comment", custom_id="comment")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Thanks: {self.comment.value}", ephemeral=True)


class FrenchTranslator(app_commands.Translator):
    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContext,
    ) -> str | None:
        if locale is not discord.Locale.french:
            return None
        return {"imagine": "imaginer", "Draw a picture": "Dessiner une image"}.get(string.message)


class SampleBot(commands.Bot):
    """A small bot using the features the course bot needs; records what it received."""

    def __init__(self, guild_id: int) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default())
        self.guild_id = guild_id
        self.seen: dict[str, Any] = {}
        self.gate = asyncio.Event()
        self._add_commands()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before every re-IDENTIFY (Discord's identify rate limit)."""

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RerollButton)
        self.add_view(HistoryView())
        await self.tree.set_translator(FrenchTranslator())
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))

    def _add_commands(self) -> None:
        tree, seen = self.tree, self.seen

        @tree.command(name="imagine", description="Draw a picture")
        async def imagine(
            interaction: discord.Interaction,
            prompt: str,
            steps: app_commands.Range[int, 1, 50] = 20,
            guidance: float = 7.5,
            image: discord.Attachment | None = None,
            model: str = "sd-turbo",
        ) -> None:
            seen["imagine"] = {
                "prompt": prompt,
                "steps": steps,
                "guidance": guidance,
                "model": model,
                "image": await image.read() if image else None,
                "locale": interaction.locale,
            }
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content="Queued")
            view = discord.ui.View(timeout=None)
            view.add_item(RerollButton(42))
            png = discord.File(io.BytesIO(RESULT_PNG), "result.png")
            await interaction.followup.send(prompt, file=png, view=view)
            await interaction.edit_original_response(content="Done")

        @imagine.autocomplete("model")
        async def model_choices(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return [app_commands.Choice(name=m, value=m) for m in MODELS if m.startswith(current)]

        admin = app_commands.Group(name="admin", description="Course admin commands")
        models = app_commands.Group(name="models", description="Manage models", parent=admin)

        @models.command(name="add", description="Add a model")
        async def models_add(
            interaction: discord.Interaction,
            name: str,
            weight: float,
            public: bool,
            maintainer: discord.Member,
            role: discord.Role,
        ) -> None:
            seen["models add"] = (name, weight, public, maintainer, role, interaction.permissions)
            await interaction.response.send_message(f"Added {name}", ephemeral=True)

        tree.add_command(admin)

        @tree.command(
            name="post", description="Post to the channel", guild=discord.Object(self.guild_id)
        )
        async def post(interaction: discord.Interaction, text: str) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send(text)
            await interaction.followup.send("Posted", ephemeral=True)

        @tree.command(name="slow", description="Answer after the test says so")
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await asyncio.wait_for(self.gate.wait(), 5)
            try:
                await interaction.edit_original_response(content="Finished")
            except discord.HTTPException as exc:
                seen["slow error"] = (exc.status, exc.code)
                assert isinstance(interaction.channel, discord.abc.Messageable)
                await interaction.channel.send(f"{interaction.user.mention} Finished")

        @tree.command(name="late", description="Answers after the deadline")
        async def late(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.3)
            try:
                await interaction.response.send_message("too late")
            except discord.HTTPException as exc:
                seen["late error"] = (exc.status, exc.code)

        @tree.command(name="shout", description="Send too much text")
        async def shout(interaction: discord.Interaction) -> None:
            try:
                await interaction.response.send_message("A" * 2001)
            except discord.HTTPException as exc:
                seen["shout error"] = (exc.status, exc.code, exc.text)

        @tree.command(name="pick", description="Pick a model")
        async def pick(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Pick one", view=PickView())

        @tree.command(name="feedback", description="Open a form")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(FeedbackModal())


@pytest.fixture
async def stub() -> AsyncIterator[DiscordStub]:
    async with DiscordStub() as running_stub:
        yield running_stub


@pytest.fixture
async def bot(stub: DiscordStub) -> AsyncIterator[SampleBot]:
    sample = SampleBot(stub.guild.id)
    async with stub.running(sample):
        yield sample


async def test_connects_with_zlib_stream_and_syncs_commands(
    stub: DiscordStub, bot: SampleBot
) -> None:
    assert bot.user is not None and bot.user.id == stub.bot_user.id
    guild = bot.get_guild(stub.guild.id)
    assert guild is not None
    assert [c.name for c in guild.text_channels] == ["diffusion-models-class", "general"]
    assert [t.name for t in guild.threads] == ["imagine-results"]
    assert {r.name for r in guild.roles} >= {"@everyone", "Course Admin"}
    assert guild.me is not None
    # discord.py asked for a zlib-compressed stream, and the stub answered in kind.
    assert stub.gateway.connections[0].query["compress"] == "zlib-stream"

    synced = {c["name"]: c for c in stub.synced_commands()}
    assert set(synced) == {"imagine", "admin", "slow", "late", "shout", "pick", "feedback"}
    assert synced["imagine"]["name_localizations"] == {"fr": "imaginer"}
    assert synced["imagine"]["description_localizations"] == {"fr": "Dessiner une image"}
    options = {o["name"]: o["type"] for o in synced["imagine"]["options"]}
    assert options == {"prompt": 3, "steps": 4, "guidance": 10, "image": 11, "model": 3}
    assert [c["name"] for c in stub.synced_commands(guild=stub.guild)] == ["post"]
    assert all(c["id"] for c in synced.values())


async def test_slash_command_defer_edit_followup_with_file(
    stub: DiscordStub, bot: SampleBot
) -> None:
    upload = png_bytes(3, 3)
    handle = await stub.invoke_slash(
        "imagine",
        {"prompt": "a cat", "steps": 30},
        attachments={"image": ("cat.png", upload, "image/png")},
        locale="fr",
    )
    done = await handle.wait_for_message(lambda m: m.content == "Done")

    assert bot.seen["imagine"] == {
        "prompt": "a cat",
        "steps": 30,
        "guidance": 7.5,
        "model": "sd-turbo",
        "image": upload,  # Attachment.read() fetched the bytes from the stub's CDN route
        "locale": discord.Locale.french,
    }
    assert [e.kind for e in handle.events] == [
        EventKind.RESPONSE,
        EventKind.EDIT_ORIGINAL,
        EventKind.FOLLOWUP,
        EventKind.EDIT_ORIGINAL,
    ]
    assert handle.response_type is CallbackType.DEFERRED_CHANNEL_MESSAGE
    assert handle.events[0].message is not None and handle.events[0].message.is_loading
    assert [e.message.content for e in handle.edits if e.message] == ["Queued", "Done"]
    assert done.id == handle.original_message_id

    (followup,) = handle.followups
    assert followup.id != handle.original_message_id
    (png,) = followup.png_attachments
    assert png.data == RESULT_PNG and png.filename == "result.png" and png.image_size == (16, 8)
    assert followup.custom_ids == ["reroll:42"]
    async with aiohttp.ClientSession() as session, session.get(png.url) as response:
        assert await response.read() == RESULT_PNG


async def test_subcommand_group_options_are_typed_from_the_synced_command(
    stub: DiscordStub, bot: SampleBot
) -> None:
    admin = stub.add_user("teacher", roles=["Course Admin"])
    handle = await stub.invoke_slash(
        "admin models add",
        {"name": "sdxl", "weight": 2, "public": True, "maintainer": admin, "role": "Course Admin"},
        user=admin,
    )
    message = await handle.wait_for_message()

    option = handle.payload["data"]["options"][0]
    assert (option["type"], option["name"]) == (2, "models")
    assert (option["options"][0]["type"], option["options"][0]["name"]) == (1, "add")
    name, weight, public, maintainer, role, permissions = bot.seen["models add"]
    assert (name, weight, public) == ("sdxl", 2.0, True) and isinstance(weight, float)
    assert isinstance(maintainer, discord.Member) and maintainer.id == admin.id
    assert isinstance(role, discord.Role) and role.name == "Course Admin"
    assert permissions.administrator
    assert message.is_ephemeral and message.content == "Added sdxl"


async def test_invocations_are_checked_like_the_discord_client(
    stub: DiscordStub, bot: SampleBot
) -> None:
    with pytest.raises(ValueError, match="missing required option"):
        await stub.invoke_slash("imagine", {"steps": 3})
    with pytest.raises(ValueError, match="within"):
        await stub.invoke_slash("imagine", {"prompt": "x", "steps": 500})
    with pytest.raises(TypeError, match="INTEGER"):
        await stub.invoke_slash("imagine", {"prompt": "x", "steps": "20"})
    with pytest.raises(LookupError, match="needs a subcommand"):
        await stub.invoke_slash("admin models", {})
    with pytest.raises(LookupError, match="not registered"):
        await stub.invoke_slash("paint", {})


async def test_dynamic_item_button_click_updates_the_message(
    stub: DiscordStub, bot: SampleBot
) -> None:
    handle = await stub.invoke_slash("imagine", {"prompt": "a fox"})
    result = await handle.wait_for_message(lambda m: bool(m.custom_ids))

    click = await stub.click(result, "reroll:42")
    response = await click.wait_for_response()

    assert click.payload["message"]["id"] == str(result.id)
    assert response.response_type is CallbackType.UPDATE_MESSAGE
    assert response.message is not None
    assert response.message.content == "Rerolling job 42"
    assert response.message.components == ()  # view=None removed the button
    assert stub.state.messages[result.id].content == "Rerolling job 42"


async def test_persistent_view_works_on_a_message_from_before_a_restart(
    stub: DiscordStub, bot: SampleBot
) -> None:
    button = {"type": 2, "style": 1, "label": "History", "custom_id": "history:open"}
    old = stub.seed_bot_message(
        None, {"content": "Results", "components": [{"type": 1, "components": [button]}]}
    )

    click = await stub.click(old, "history:open", user=stub.add_user("alice"))
    reply = await click.wait_for_message()

    assert click.response_type is CallbackType.CHANNEL_MESSAGE
    assert reply.content == "Your history" and reply.is_ephemeral


async def test_select_menu_with_deferred_update(stub: DiscordStub, bot: SampleBot) -> None:
    menu = await (await stub.invoke_slash("pick")).wait_for_message()
    with pytest.raises(ValueError, match="has no option"):
        await stub.click(menu, "pick:model", values=["dall-e"])

    click = await stub.click(menu, "pick:model", values=["sdxl"])
    edited = await click.wait_for_message(lambda m: m.content.startswith("Picked"))

    assert click.response_type is CallbackType.DEFERRED_UPDATE_MESSAGE
    assert edited.id == menu.id and edited.content == "Picked sdxl" and not edited.components


async def test_autocomplete_returns_the_bots_choices(stub: DiscordStub, bot: SampleBot) -> None:
    choices = await stub.autocomplete(
        "imagine", {"prompt": "a cat", "model": "sd"}, focused="model"
    )
    assert [c["value"] for c in choices] == ["sd-turbo", "sd-1.5", "sdxl"]
    (interaction,) = [i for i in stub.interactions if i.type is InteractionType.AUTOCOMPLETE]
    focused = [o for o in interaction.payload["data"]["options"] if o.get("focused")]
    assert focused == [{"name": "model", "type": 3, "value": "sd", "focused": True}]


async def test_modal_round_trip(stub: DiscordStub, bot: SampleBot) -> None:
    opened = await stub.invoke_slash("feedback")
    modal = await opened.wait_for_response()
    assert modal.response_type is CallbackType.MODAL and modal.payload["title"] == "Feedback"

    submitted = await stub.submit_modal(opened, {"comment": "great course"})
    assert (await submitted.wait_for_message()).content == "Thanks: great course"


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-4000", "tcp-reset"])
async def test_gateway_drop_resumes_and_keeps_working(
    stub: DiscordStub, bot: SampleBot, abrupt: bool
) -> None:
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)

    dropped = await stub.drop_gateway(abrupt=abrupt)
    connection = await stub.wait_connected(after=dropped.index)
    await asyncio.wait_for(resumed.wait(), 5)

    assert connection.kind == "resume"
    assert len(stub.gateway.identify_payloads) == 1
    options = {
        "name": "x",
        "weight": 1.0,
        "public": False,
        "maintainer": "student",
        "role": "Course Admin",
    }
    handle = await stub.invoke_slash("admin models add", options)
    assert (await handle.wait_for_message()).content == "Added x"


async def test_invalid_session_makes_the_client_identify_again(
    stub: DiscordStub, bot: SampleBot
) -> None:
    before = stub.gateway.connections[-1].index
    stub.gateway.invalidate_session(resumable=False)
    connection = await stub.wait_connected(after=before)
    assert connection.kind == "identify" and len(stub.gateway.identify_payloads) == 2


async def test_server_error_is_retried_by_discord_py(stub: DiscordStub, bot: SampleBot) -> None:
    fault = stub.fail_next("POST", "/channels/{channel_id}/messages", status=500)
    handle = await stub.invoke_slash("post", {"text": "hello class"})

    reply = await handle.wait_for_message(lambda m: m.content == "Posted")
    # The first followup after a defer replaces the "thinking..." message, keeping it ephemeral.
    assert reply.id == handle.original_message_id and reply.is_ephemeral
    (posted,) = stub.channel_messages("diffusion-models-class")
    assert posted.content == "hello class"
    attempts = stub.requests_to("POST", "/channels/*/messages")
    assert [(r.status, r.injected) for r in attempts] == [(500, True), (200, False)]
    assert fault.hits == 1


async def test_rate_limit_429_is_waited_out(stub: DiscordStub, bot: SampleBot) -> None:
    stub.fail_next(
        "PATCH", "/webhooks/{app}/{token}/messages/@original", status=429, retry_after=0.2
    )
    handle = await stub.invoke_slash("imagine", {"prompt": "rate limited"})
    await handle.wait_for_message(lambda m: m.content == "Done")
    edits = stub.requests_to("PATCH", "/webhooks/*/*/messages/@original")
    assert [r.status for r in edits] == [429, 200, 200]


async def test_expired_token_gets_401_and_the_bot_falls_back_to_the_channel(
    stub: DiscordStub, bot: SampleBot
) -> None:
    handle = await stub.invoke_slash("slow")
    await handle.wait_for_response()
    stub.expire_token(handle)
    bot.gate.set()

    fallback = await stub.wait_for_channel_message("diffusion-models-class")
    assert fallback.content.endswith("Finished")
    assert bot.seen["slow error"] == (401, 50027)
    (rejected,) = handle.rejections
    assert rejected.status == 401 and rejected.error == {
        "message": "Invalid Webhook Token",
        "code": 50027,
    }


async def test_late_and_repeated_callbacks_are_refused() -> None:
    async with DiscordStub(callback_deadline=0.2) as stub:
        bot = SampleBot(stub.guild.id)
        async with stub.running(bot):
            late = await stub.invoke_slash("late")
            await asyncio.sleep(0)
            await stub.signal.wait_until(
                lambda: bot.seen.get("late error"), timeout=5, describe=lambda: "the late error"
            )
            assert bot.seen["late error"] == (404, 10062)
            assert late.response is None

            answered = await stub.invoke_slash("feedback")
            await answered.wait_for_response()
            url = f"{stub.api_base}/interactions/{answered.id}/{answered.token}/callback"
            again = {"type": 4, "data": {"content": "again"}}
            async with aiohttp.ClientSession() as session, session.post(url, json=again) as answer:
                assert answer.status == 400
                assert (await answer.json())["code"] == 40060


async def test_discord_limits_are_enforced(stub: DiscordStub, bot: SampleBot) -> None:
    handle = await stub.invoke_slash("shout")
    await stub.signal.wait_until(
        lambda: bot.seen.get("shout error"), timeout=5, describe=lambda: "the shout error"
    )
    status, code, _ = bot.seen["shout error"]
    assert (status, code) == (400, 50035)
    assert handle.rejections[0].error is not None
    assert "BASE_TYPE_MAX_LENGTH" in str(handle.rejections[0].error["errors"]["content"])


async def test_wait_timeouts_say_what_arrived(stub: DiscordStub, bot: SampleBot) -> None:
    handle = await stub.invoke_slash("feedback")
    with pytest.raises(StubTimeout, match=r"(?s)a PNG.*response type=9"):
        await handle.wait_for_message(
            lambda m: bool(m.png_attachments), timeout=0.3, description="a PNG"
        )


async def test_unknown_routes_are_recorded_and_fail_strict_stubs() -> None:
    with pytest.raises(AssertionError, match="unknown route: GET /voice/regions -> 404"):
        async with DiscordStub() as stub:
            url = f"{stub.api_base}/voice/regions"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                assert response.status == 404
                assert await response.json() == {"message": "Unknown", "code": 0}
            assert [r.path for r in stub.unknown_requests] == ["/voice/regions"]


async def test_patching_is_undone_on_exit() -> None:
    original = discord.http.Route.BASE
    async with DiscordStub() as stub:
        patched = (discord.http.Route.BASE, str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY))
        assert patched == (stub.api_base, stub.gateway_url)
    assert (discord.http.Route.BASE, original) == (original, discord.http.Route.BASE)


@pytest.mark.parametrize("where", ["imagine-results", "dm"])
async def test_threads_and_dms(stub: DiscordStub, bot: SampleBot, where: str) -> None:
    user = stub.add_user("bob")
    channel = stub.dm_channel(user) if where == "dm" else stub.channel(where)

    handle = await stub.invoke_slash("imagine", {"prompt": "owl"}, user=user, channel=channel)
    done = await handle.wait_for_message(lambda m: m.content == "Done")

    assert done.channel_id == channel.id
    assert ("member" in handle.payload) is (where != "dm")
    assert [m.content for m in stub.channel_messages(channel, source=None)] == ["Done", "owl"]


async def test_gateway_protocol_zlib_stream_and_resume_replay(stub: DiscordStub) -> None:
    """The raw protocol, without discord.py: compression, sequence numbers, replay."""
    session_id = ""
    async with aiohttp.ClientSession() as session:
        url = f"{stub.gateway_url}?v=10&encoding=json&compress=zlib-stream"
        async with session.ws_connect(url) as ws:
            inflate = zlib.decompressobj()

            async def receive() -> dict[str, Any]:
                frame = await ws.receive_bytes(timeout=5)
                assert frame.endswith(b"\x00\x00\xff\xff")  # Z_SYNC_FLUSH ends each message
                return json.loads(inflate.decompress(frame))

            assert (await receive())["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": stub.token, "intents": 513}})
            ready, guild_create = await receive(), await receive()
            assert (ready["t"], ready["s"], guild_create["t"], guild_create["s"]) == (
                "READY",
                1,
                "GUILD_CREATE",
                2,
            )
            session_id = ready["d"]["session_id"]
            await ws.send_json({"op": 1, "d": 2})
            assert (await receive())["op"] == 11

        gone = stub.gateway.connections[0]
        await stub.signal.wait_until(
            lambda: gone if gone.closed else None, timeout=5, describe=lambda: "the disconnect"
        )
        missed = stub.gateway.dispatch("TYPING_START", {"channel_id": "1", "user_id": "2"})
        async with session.ws_connect(f"{stub.gateway_url}?v=10&encoding=json") as ws:
            assert (await ws.receive_json(timeout=5))["op"] == 10  # uncompressed: text frames
            await ws.send_json(
                {"op": 6, "d": {"token": stub.token, "session_id": session_id, "seq": 2}}
            )
            replayed, resumed = await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)
    assert (replayed["t"], replayed["s"]) == ("TYPING_START", missed)
    assert (resumed["t"], resumed["s"]) == ("RESUMED", missed + 1)


async def test_channel_routes_used_with_the_bot_token(stub: DiscordStub, bot: SampleBot) -> None:
    channel = bot.get_channel(stub.channel("general").id)
    assert isinstance(channel, discord.TextChannel)

    async with channel.typing():
        sent = await channel.send("draft", file=discord.File(io.BytesIO(RESULT_PNG), "a.png"))
    edited = await sent.edit(content="final", attachments=[*sent.attachments])
    fetched = await channel.fetch_message(sent.id)
    thread = await sent.create_thread(name="discussion")
    await thread.send("in thread")
    spare = await channel.send("to delete")
    await spare.delete()

    assert (edited.content, fetched.content, fetched.attachments[0].filename) == (
        "final",
        "final",
        "a.png",
    )
    assert await fetched.attachments[0].read() == RESULT_PNG
    assert thread.id == sent.id  # a thread started from a message shares its id
    assert [m.content for m in stub.channel_messages("general")] == ["final"]
    assert [m.content for m in stub.channel_messages(thread.id)] == ["in thread"]
    assert [m.content async for m in channel.history(limit=5)] == ["final"]


async def test_dropped_connections_and_enforced_nonces() -> None:
    async with DiscordStub() as stub:
        channel = stub.channel()
        url = f"{stub.api_base}/channels/{channel.id}/messages"
        auth = {"Authorization": f"Bot {stub.token}"}
        body = {"content": "once", "nonce": "job1-end", "enforce_nonce": True}
        stub.drop_next("POST", "/channels/{channel_id}/messages", after=True)
        async with aiohttp.ClientSession(headers=auth) as session:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await session.post(url, json=body)
            assert [m.content for m in stub.channel_messages(channel)] == ["once"]
            # The same nonce again (a retry): the message already made, no second one.
            async with session.post(url, json=body) as again:
                assert (await again.json())["id"] == str(stub.channel_messages(channel)[0].id)
            stub.drop_next("POST", "/channels/{channel_id}/messages")
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await session.post(url, json={"content": "never"})
        assert [m.content for m in stub.channel_messages(channel)] == ["once"]
        assert [r.status for r in stub.requests_to("POST", "/channels/*/messages")] == [0, 200, 0]
