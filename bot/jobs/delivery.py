"""What users see of a job: one message, edited as the job moves, ending with the images.

Implements the scheduler's observer for Discord. Each job has a ticket with the latest state
to show and a pump task that edits the message no faster than Discord allows; a state that
is replaced before it was shown is simply skipped. Edits go through the interaction while its
token lives, through the channel (with a mention) after. When the job moves to a new message
(the token ran out, or the result could not be put in the old one), the old message is cut down
to a line pointing to the new one: no preview, no buttons left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import discord

from bot.jobs.comparison_results import comparison_message
from bot.jobs.depth_map import depth_map_note, depth_map_upload
from bot.jobs.image_store import ImageStore
from bot.jobs.lessons import denoising_steps, lesson_actions
from bot.jobs.mask_outline import outline_note, outline_upload
from bot.jobs.upload_fit import DEFAULT_LIMIT, UploadFile, fit
from bot.store.models import Job
from bot.store.repository import Repository
from bot.ui import render
from bot.ui.attachments import InMemoryFiles
from bot.ui.buttons import result_view, running_view
from bot.ui.interactions import is_expired_token
from engine.protocol import Accepted, Family, JobKind, Progress, Result

log = logging.getLogger(__name__)

# Interaction tokens last 15 minutes; stop using one a little before, so an edit in flight
# does not race the expiry.
TOKEN_LIFETIME = 14 * 60
# Pauses before trying a result again after Discord failed (discord.py has already retried
# some 5xx itself by then); then the result goes to the channel as a new message.
RESULT_RETRY_DELAYS = (1.0, 3.0, 10.0)
# A queued job's place is edited at most once per this many edit intervals: in a long queue
# places change all the time, and what a student needs is the trend, then the start at once.
PLACE_EDIT_INTERVALS = 5
# What a dropped connection looks like from discord.py: it retries some 5xx itself, but a
# connection closed or reset under a request (aiohttp.ServerDisconnectedError, ECONNRESET on
# Linux) or a read that timed out comes straight up. Like a 5xx, worth another try.
DISCORD_ERRORS = (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError)
# Messages with files (results, previews) on their way to Discord at once. Each holds a copy of
# its images while it uploads, and a burst of finished jobs would otherwise upload through
# every connection of the pool at once (1000 jobs: a 441-557 MiB peak); Discord's per-channel
# rate limits leave nothing to gain from more.
MAX_UPLOADS = 16
# Pauses before writing a message id again when the store refused it: a result posted but
# not recorded would be posted again at the next start.
RECORD_RETRY_DELAYS = (0.5, 2.0, 5.0, 15.0)
REENCODED_NOTE = (
    "(Re-encoded as WebP to fit Discord's upload limit; the settings are in its EXIF and the "
    "full PNG is kept by the bot.)"
)


@dataclass
class Screen:
    """One state of the job's message."""

    content: str
    files: list[UploadFile] = field(default_factory=list)
    view: discord.ui.View | None = None  # None: no buttons (an earlier screen's are removed)
    final: bool = False
    place: bool = False  # only says where the job is in the queue


@dataclass
class Ticket:
    job_id: int
    owner_id: int
    channel_id: int
    prompt: str
    steps: int
    interaction: discord.Interaction | None
    deadline: float  # monotonic time after which the token is not used
    message: discord.Message | discord.PartialMessage | None = None
    # The message a previous run of the bot left for this job (resumed after a restart): it
    # is cut down to a pointer once the job has a message of its own.
    left_behind: int | None = None
    status_recorded: bool = False  # the job's first message id is in the store
    note: str = ""  # said before every screen posted in the channel ("resumed after a restart")
    chunks_note: str = ""  # how long prompts were split into windows (render.prompt_chunks_note)
    screen: Screen | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    urgent: asyncio.Event = field(default_factory=asyncio.Event)  # a screen that is no place
    pump: asyncio.Task[None] | None = None
    # The buttons under a queued or running job: one view for all its screens, since
    # discord.py builds and registers a view's items every time one is made and sent.
    controls: discord.ui.View | None = None

    @property
    def locale(self) -> str | None:
        """The asker's language, while their interaction is known (not after a restart)."""
        return self.interaction.locale.value if self.interaction else None


class Delivery:
    """Keeps each job's Discord message in step with the scheduler."""

    def __init__(
        self,
        client: discord.Client,
        repo: Repository,
        *,
        min_edit_interval: float = 1.0,
        retry_delays: tuple[float, ...] = RESULT_RETRY_DELAYS,
        max_uploads: int = MAX_UPLOADS,
        images: ImageStore | None = None,
    ) -> None:
        """``images``: where results' images are stored; with it, a result is sent from its
        stored files, streamed from disk, instead of holding its pictures while it waits for
        an upload slot (a burst's results can wait minutes for Discord)."""
        self._client = client
        self._images = images
        self._uploads = asyncio.Semaphore(max_uploads)
        self._repo = repo
        self._retry_delays = retry_delays
        self._min_edit_interval = min_edit_interval
        self._tickets: dict[int, Ticket] = {}
        self.finished_jobs = asyncio.Queue[int]()  # for tests and /status: results posted

    def track(
        self,
        job: Job,
        interaction: discord.Interaction | None,
        *,
        note: str = "",
        left_behind: int | None = None,
    ) -> None:
        """Start following ``job``; with no interaction, messages go to its channel.
        ``left_behind``: the id of a message an earlier run showed the job in."""
        ticket = Ticket(
            job_id=job.id,
            owner_id=job.user_id,
            channel_id=job.channel_id,
            prompt=job.prompt,
            # What the engine will count: steps × strength when starting from a picture.
            steps=denoising_steps(job),
            interaction=interaction,
            deadline=time.monotonic() + TOKEN_LIFETIME if interaction else 0.0,
            note=note,
            left_behind=left_behind,
            status_recorded=left_behind is not None,
        )
        self._tickets[job.id] = ticket
        ticket.pump = asyncio.create_task(self._pump(ticket), name=f"delivery-{job.id}")

    def limit_uploads(self, most: int) -> None:
        """At most ``most`` messages with files on their way at once (benchmarks compare)."""
        self._uploads = asyncio.Semaphore(most)

    def is_tracked(self, job_id: int) -> bool:
        return job_id in self._tickets

    @property
    def busy(self) -> bool:
        """Whether any job's message still has updates on their way."""
        return bool(self._tickets)

    async def close(self, grace: float = 15.0) -> None:
        """Let results already on their way arrive (bounded), then stop following jobs.

        Jobs still queued are not lost: the next start resumes them and tells their owners.
        """
        finishing = [
            t.pump for t in self._tickets.values() if t.pump and t.screen and t.screen.final
        ]
        if finishing:
            await asyncio.wait(finishing, timeout=grace)
        pumps = [t.pump for t in self._tickets.values() if t.pump]
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    # --- the scheduler's observer ------------------------------------------------------

    async def queued(self, job_id: int, position: int) -> None:
        if ticket := self._tickets.get(job_id):
            line = render.queued_line(job_id, ticket.prompt, position)
            self._show(ticket, Screen(line, view=self._controls(ticket), place=True))

    async def started(self, job_id: int, accepted: Accepted) -> None:
        if ticket := self._tickets.get(job_id):
            ticket.chunks_note = render.prompt_chunks_note(
                accepted.prompt_chunks, accepted.negative_prompt_chunks
            )
            self._show(ticket, self._running_screen(ticket, 0, ticket.steps, None))

    async def progress(self, job_id: int, progress: Progress) -> None:
        if ticket := self._tickets.get(job_id):
            self._show(
                ticket,
                self._running_screen(
                    ticket, progress.step, progress.total_steps, progress.preview_png
                ),
            )

    async def retrying(self, job_id: int) -> None:
        if ticket := self._tickets.get(job_id):
            line = (
                f"🔁 The image engine restarted; job #{job_id} is queued again. "
                f"{render.quote_prompt(ticket.prompt)}"
            )
            self._show(ticket, Screen(line, view=self._controls(ticket)))

    async def finished(self, job: Job, result: Result, stored: Sequence[str] = ()) -> None:
        """Show ``job``'s result; ``stored``: where each of its images was saved, if it was."""
        ticket = self._tickets.get(job.id)
        if ticket is None:
            return
        # In the asker's language: a course comparison's captioned grid (bot.course), and the
        # buttons under any result.
        locale = ticket.locale
        pictures = self._pictures(result, stored)
        if pictures is None:
            log.error("job %s: a spooled picture has no stored file; not shown", job.id)
            self._show(ticket, Screen(_images_lost_line(job.id, job.prompt), final=True))
            return
        model = await self._repo.get_model(job.model_name)
        family = model.family if model is not None else Family.SD
        if job.comparison and (
            lesson := await comparison_message(
                job, result, locale, ticket.chunks_note, family, pictures=pictures
            )
        ):
            self._show(ticket, Screen(*lesson, final=True))
            return
        files = [
            UploadFile(
                f"job{job.id}_{image.seed}.png",
                b"" if isinstance(picture, Path) else picture,
                image.nsfw,
                path=picture if isinstance(picture, Path) else None,
            )
            for image, picture in zip(result.images, pictures, strict=True)
        ]
        caption = render.result_caption(job, result.seconds, ticket.chunks_note)
        if outline := outline_upload(result):  # inpainting: what was repainted
            files.append(outline)
            caption += "\n" + outline_note(job, result)
        if depth := depth_map_upload(result):  # depth-to-image: what conditioned the images
            files.append(depth)
            caption += "\n" + depth_map_note(result)
        view = result_view(
            job.id, JobKind(job.kind), len(result.images), lesson_actions(family), locale
        )
        self._show(ticket, Screen(caption, files, view, final=True))

    def _pictures(self, result: Result, stored: Sequence[str]) -> list[bytes | Path] | None:
        """Each picture's stored file, sent from disk so that the result's bytes are freed now
        (bot.jobs.upload_fit); its bytes where nothing was stored. None when a picture is
        neither: an engine's spooled file that the store did not take."""
        if self._images is not None and len(stored) == len(result.images):
            return [self._images.resolve(path) for path in stored]
        pictures: list[bytes | Path] = []
        for image in result.images:
            if not isinstance(image.png, bytes):
                return None
            pictures.append(image.png)
        return pictures

    async def failed(self, job: Job) -> None:
        if ticket := self._tickets.get(job.id):
            self._show(ticket, Screen(render.failed_line(job), final=True))

    async def images_lost(self, job: Job) -> None:
        """A result that cannot be shown: its images are gone from the bot's disk."""
        if ticket := self._tickets.get(job.id):
            self._show(ticket, Screen(_images_lost_line(job.id, job.prompt), final=True))

    async def shown_before(self, job: Job) -> int | None:
        """The id of a message that already shows ``job``'s end, though the run that posted
        it could not record it (it stopped first, or the store refused): the job's own
        message with its result or its end, or the message that one points to."""
        if job.status_message_id is None:
            return None
        try:
            channel = self._client.get_channel(job.channel_id) or await self._client.fetch_channel(
                job.channel_id
            )
            if not isinstance(channel, discord.abc.Messageable):
                return None
            message = await channel.fetch_message(job.status_message_id)
        except DISCORD_ERRORS as error:
            log.info("job %s: its message could not be read (%s)", job.id, error)
            return None
        if any(a.filename.startswith(f"job{job.id}_") for a in message.attachments):
            return message.id
        if render.is_end_line(message.content, job.id):
            return message.id
        return moved_to(message.content, final=True)

    async def cancelled(self, job: Job) -> None:
        if ticket := self._tickets.get(job.id):
            self._show(ticket, Screen(render.cancelled_line(job), final=True))

    # --- showing -----------------------------------------------------------------------

    def _running_screen(
        self, ticket: Ticket, step: int, total: int, preview: bytes | None
    ) -> Screen:
        line = render.running_line(ticket.job_id, ticket.prompt, step, total)
        if ticket.chunks_note:
            line += "\n" + ticket.chunks_note
        files = [UploadFile("preview.png", preview)] if preview else []
        return Screen(line, files, self._controls(ticket))

    @staticmethod
    def _controls(ticket: Ticket) -> discord.ui.View:
        if ticket.controls is None:
            ticket.controls = running_view(ticket.job_id, ticket.locale)
        return ticket.controls

    def _show(self, ticket: Ticket, screen: Screen) -> None:
        if ticket.screen is not None and ticket.screen.final:
            return  # the end is already on its way; nothing may overwrite it
        ticket.screen = screen
        ticket.changed.set()
        if not screen.place:
            ticket.urgent.set()

    async def _pump(self, ticket: Ticket) -> None:
        """Show the latest screen, at most one edit per interval, until the final one; after
        a place in the queue, the next place waits longer (``PLACE_EDIT_INTERVALS``)."""
        try:
            while True:
                await ticket.changed.wait()
                ticket.changed.clear()
                ticket.urgent.clear()
                screen = ticket.screen
                assert screen is not None
                if screen.final:
                    await self._show_final(ticket, screen)
                else:
                    try:
                        await self._edit(ticket, screen)
                    except DISCORD_ERRORS as error:
                        # A lost progress edit is harmless; the next one replaces it.
                        log.warning("progress of job %s not shown: %s", ticket.job_id, error)
                    await self._record_status_message(ticket)
                if screen.final:
                    if ticket.message is not None:
                        await self._record(ticket.job_id, ticket.message.id, result=True)
                    self.finished_jobs.put_nowait(ticket.job_id)
                    return
                await asyncio.sleep(self._min_edit_interval)
                if screen.place:
                    with contextlib.suppress(TimeoutError):
                        longer = (PLACE_EDIT_INTERVALS - 1) * self._min_edit_interval
                        await asyncio.wait_for(ticket.urgent.wait(), longer)
        finally:
            self._tickets.pop(ticket.job_id, None)

    async def _record_status_message(self, ticket: Ticket) -> None:
        """Store the id of the job's first message, once: a restart edits it to say where
        the job went, instead of leaving it on "Queued" with a live Cancel button."""
        if ticket.status_recorded or ticket.message is None:
            return
        ticket.status_recorded = True
        await self._record(ticket.job_id, ticket.message.id, result=False)

    async def _record(self, job_id: int, message_id: int, *, result: bool) -> None:
        """Write a message id to the job's row, trying again while the store refuses."""
        write = self._repo.set_result_message if result else self._repo.set_status_message
        for delay in (*RECORD_RETRY_DELAYS, None):
            try:
                await write(job_id, message_id)
                return
            except Exception:
                if delay is None:
                    log.exception("job %s: message %s could not be recorded", job_id, message_id)
                    return
                log.warning(
                    "job %s: recording message %s failed; again in %.1f s",
                    job_id,
                    message_id,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _show_final(self, ticket: Ticket, screen: Screen) -> None:
        """The result (or the error) must arrive: retry, then post it in the channel."""
        for delay in (*self._retry_delays, None):
            try:
                await self._edit(ticket, screen)
                return
            except DISCORD_ERRORS as error:
                transient = not isinstance(error, discord.HTTPException) or (
                    error.status >= 500 or error.status == 429
                )
                if not transient or delay is None:
                    log.warning("job %s: result not shown (%s); posting anew", ticket.job_id, error)
                    break
                log.warning(
                    "job %s: Discord failed (%s); again in %.0f s", ticket.job_id, error, delay
                )
                await asyncio.sleep(delay)
        try:
            await self._edit(ticket, screen, anew=True)
        except DISCORD_ERRORS:
            # The job is done and its images are on disk; the next start posts it again.
            ticket.message = None
            log.exception("job %s: could not post its result", ticket.job_id)

    def _upload_limit(self, ticket: Ticket) -> int:
        channel = self._client.get_channel(ticket.channel_id)
        guild = getattr(channel, "guild", None)
        return guild.filesize_limit if guild is not None else DEFAULT_LIMIT

    async def _edit(self, ticket: Ticket, screen: Screen, *, anew: bool = False) -> None:
        """Show ``screen`` in the job's message; ``anew``: in a new message in the channel.
        A screen with files waits for one of the ``max_uploads`` upload slots first."""
        if not screen.files:
            await self._send(ticket, screen, [], anew=anew)
            return
        async with self._uploads:
            try:
                fitted, reencoded = fit(screen.files, self._upload_limit(ticket))
            except OSError as error:
                _images_gone(ticket, screen, error)
                await self._send(ticket, screen, [], anew=anew)
                return
            if reencoded:
                screen.content = f"{screen.content}\n{REENCODED_NOTE}"
                screen.files = fitted
            # Made here, in the slot, and freed on leaving it: aiohttp copies a buffer's bytes
            # when it sizes the upload (bot.ui.attachments).
            with InMemoryFiles() as uploads:
                try:
                    files = [
                        uploads.file(f.data, f.name, spoiler=f.spoiler)
                        if f.path is None
                        else uploads.stored(f.path, f.name, spoiler=f.spoiler)
                        for f in fitted
                    ]
                except OSError as error:  # gone between the size and the opening
                    _images_gone(ticket, screen, error)
                    files = []
                await self._send(ticket, screen, files, anew=anew)

    async def _send(
        self, ticket: Ticket, screen: Screen, files: list[discord.File], *, anew: bool
    ) -> None:
        view = screen.view  # None removes the buttons a running job's message had
        if not anew and ticket.interaction is not None and time.monotonic() < ticket.deadline:
            try:
                ticket.message = await ticket.interaction.edit_original_response(
                    content=screen.content, attachments=files, view=view
                )
                return
            except discord.HTTPException as error:
                if not is_expired_token(error):
                    raise
                for file in files:
                    file.reset()
        await self._edit_in_channel(ticket, screen, files, view, anew=anew)

    async def _edit_in_channel(
        self,
        ticket: Ticket,
        screen: Screen,
        files: list[discord.File],
        view: discord.ui.View | None,
        *,
        anew: bool = False,
    ) -> None:
        channel = self._client.get_channel(ticket.channel_id) or await self._client.fetch_channel(
            ticket.channel_id
        )
        assert isinstance(channel, discord.abc.Messageable)
        mention = f"<@{ticket.owner_id}> {ticket.note}".rstrip() + " "
        if anew or ticket.interaction is not None or ticket.message is None:
            # The token is gone (or there never was one, or the old message would not take
            # the result): continue in a message of our own, with a mention, since the user
            # may not be watching the old one.
            old = ticket.message.id if ticket.message is not None else ticket.left_behind
            ticket.interaction = None
            send = functools.partial(
                channel.send,
                mention + screen.content,
                files=files,
                view=view or discord.utils.MISSING,
                allowed_mentions=discord.AllowedMentions(users=True),
            )
            # Discord keeps one message per nonce for a few minutes: a retry after a dropped
            # connection, or a restart soon after a crash, does not post a job's end twice.
            ticket.message = await (
                send(nonce=f"job{ticket.job_id}-end") if screen.final else send()
            )
            ticket.left_behind = None
            if old is not None:
                await self._point_to(channel, old, ticket.message, final=screen.final)
            return
        ticket.message = await ticket.message.edit(
            content=mention + screen.content, attachments=files, view=view
        )

    async def _point_to(
        self,
        channel: discord.abc.Messageable,
        old: int,
        new: discord.Message,
        *,
        final: bool,
    ) -> None:
        """Cut the job's old message down to a line pointing to ``new``.

        Its preview (or an earlier screen's) and its buttons would otherwise stay there. The
        edit goes through the channel with the bot's token: an interaction's message is the
        bot's own, and the interaction's token may be what ran out.
        """
        line = moved_line(new.jump_url, final=final)
        try:
            await discord.PartialMessage(channel=channel, id=old).edit(  # type: ignore[arg-type]  # any Messageable is tried: TypeError for others is caught below
                content=line, attachments=[], view=None
            )
        except (*DISCORD_ERRORS, TypeError) as error:
            log.warning("job message %s still shows its old screen: %s", old, error)


def moved_line(url: str, *, final: bool) -> str:
    """What a job's old message says once the job has moved to a new one."""
    return f"{_MOVED_FINAL if final else _MOVED}: {url}"


_MOVED_FINAL = "Result posted below"
_MOVED = "Continued below"


def moved_to(content: str, *, final: bool) -> int | None:
    """The id of the message a :func:`moved_line` points to, if ``content`` is one."""
    prefix = f"{_MOVED_FINAL if final else _MOVED}: "
    if not content.startswith(prefix):
        return None
    last = content.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else None


def _images_lost_line(job_id: int, prompt: str) -> str:
    return (
        f"⚠️ Job #{job_id} finished, but its images are no longer on the bot's disk, so they "
        f"cannot be posted. {render.quote_prompt(prompt)} Use the same seeds to make them again."
    )


def _images_gone(ticket: Ticket, screen: Screen, error: OSError) -> None:
    """``screen`` says the job's stored images could not be read, as after a restart
    (``images_lost``): no files, and no buttons, which would need the images."""
    log.error("job %s: its images cannot be read: %s", ticket.job_id, error)
    screen.content = _images_lost_line(ticket.job_id, ticket.prompt)
    screen.files, screen.view = [], None
