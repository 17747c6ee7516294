"""The review queue: a card per flagged image in the moderators' channel, and what a decision
does to the messages and files.

The engine blurs a flagged image before any byte reaches the bot, and sends its unblurred
original beside it. The bot keeps that original in its own folder (``MODERATION_ORIGINALS_DIR``),
apart from the image folder it posts from, and shows it in one place only: the card in the
moderators' channel, as a spoiler beside the blurred image the channel sees. A release puts it
in place of the blurred image in the job's own message (and over the stored copy, which Vary
and redelivery read); Confirm and Strike leave the image blurred and delete the original after
``MODERATION_DELETE_ORIGINAL_AFTER_HOURS``; the retention pass deletes every original due
(``bot.jobs.retention``). Who may decide is the feature's business (``bot.features.moderation``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

import discord

from bot.jobs.comparison_results import (
    comparison_message,
    comparison_title,
    flagged_line,
    panel_name,
)
from bot.jobs.delivery import DISCORD_ERRORS
from bot.jobs.image_store import ImageStore
from bot.jobs.mask_outline import OUTLINE_BLURRED, OUTLINE_NAME
from bot.jobs.upload_fit import DEFAULT_LIMIT, fit
from bot.settings import ModerationSettings
from bot.store.models import OUTLINE_INDEX, Job, Review, ReviewState, utcnow
from bot.store.moderation import Decision
from bot.store.repository import Repository
from bot.ui import render
from bot.ui.attachments import InMemoryFiles
from bot.ui.buttons import review_view
from bot.ui.i18n import MESSAGES
from engine.protocol import Family, GeneratedImage, Result

log = logging.getLogger(__name__)

RELEASED_NOTE = "🔓 A moderator released image {number}: the safety checker had flagged it wrongly."
OUTLINE_RELEASED_NOTE = "🔓 A moderator released the mask outline."
PANEL_RELEASED_NOTE = (
    "🔓 A moderator released the “{label}” panel: the safety checker had flagged it wrongly."
)
_DECIDED = {
    ReviewState.RELEASED: "🔓 **Released**",
    ReviewState.CONFIRMED: "🔒 **Confirmed**",
    ReviewState.STRUCK: "⚠️ **Confirmed with a strike**",
}


def outline_reason(job: Job) -> str:
    """Why an inpainting's outline is blurred, as far as the stored verdicts tell."""
    if any(image.first_flag for image in job.images):
        return (
            "Blurred with the job's flagged images: outside the repainted area they keep this "
            "picture (its own check may have been clear)."
        )
    return "Blurred: the safety checker flagged it."


def verdict_line(job: Job, review: Review) -> str:
    """What both checkers said of the reviewed image."""
    image = job.images[review.image_index] if review.image_index < len(job.images) else None
    if image is None or image.first_flag is None:
        return "Safety checker: flagged."
    first = "flagged" if image.first_flag else "clear"
    if image.first_score is not None:
        first += f", margin {image.first_score:+.3f}"
    if image.second_flag is None:
        second = "not asked"
    elif image.second_score is None:
        second = "failed (counts as flagged)"
    else:
        said = "flagged" if image.second_flag else "clear"
        second = f"{said}, NSFW score {image.second_score:.2f}"
    return f"First checker (CompVis): {first} · second opinion (open_nsfw): {second}."


def picture_name(review: Review, job: Job | None = None) -> str:
    """The reviewed picture, as a decision's answer names it; a comparison's panel by its axis
    values when its ``job`` is given."""
    if review.image_index == OUTLINE_INDEX:
        return "the mask outline"
    if job is not None and job.comparison:
        return f"panel {review.image_index + 1} (“{panel_name(job, review.image_index)}”)"
    return f"image {review.image_index + 1}"


def card_text(job: Job, review: Review) -> str:
    """A card's text: whose image (a comparison's: which panel, by its axis values; an
    inpainting's outline), the prompt, the verdicts, and what is attached."""
    number = f"{review.image_index + 1} of {len(job.images)}"
    if review.image_index == OUTLINE_INDEX:
        return (
            f"🚩 **Blurred mask outline** · job #{job.id}: the student's picture with the "
            f"repainted area outlined · by <@{job.user_id}> · review #{review.id}\n"
            f"{render.quote_prompt(job.prompt)}\n"
            f"{outline_reason(job)}\n"
            "The channel sees it blurred; the picture here (a spoiler) is the original, shown "
            "only here. It shows the part of the picture the result repainted, so it is judged "
            "on its own card."
        )
    if job.comparison:
        what = (
            f"🚩 **Flagged panel** · job #{job.id}, panel {number} "
            f"(“{panel_name(job, review.image_index)}”) of its {comparison_title(job)}"
        )
        shown = "The first picture is the panel as the grid in the channel shows it"
    else:
        what = f"🚩 **Flagged image** · job #{job.id}, image {number}"
        shown = "The first picture is what the channel sees"
    return (
        f"{what} · by <@{job.user_id}> · review #{review.id}\n"
        f"{render.quote_prompt(job.prompt)}\n"
        f"{verdict_line(job, review)}\n"
        f"{shown}; the second (a spoiler) is the original, shown only here."
    )


def decided_text(job: Job, review: Review) -> str:
    """A card's text once decided: who decided what, and when."""
    stamp = int((review.decided_at or utcnow()).timestamp())
    what = _DECIDED.get(review.state, review.state.value)
    line = f"{what} by <@{review.decided_by}> <t:{stamp}:R>"
    return f"{card_text(job, review)}\n{line}"


class ReviewQueue:
    """Posts the moderators' cards and carries out their decisions; see the module."""

    def __init__(
        self,
        client: discord.Client,
        repo: Repository,
        images: ImageStore,
        settings: ModerationSettings,
    ) -> None:
        self._client = client
        self._repo = repo
        self._images = images
        self.settings = settings
        self.originals = ImageStore(settings.originals_dir)
        self._posting: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        """Whether there is a moderators' channel to review in."""
        return self.settings.channel_id is not None

    # --- the scheduler's FlaggedImages -----------------------------------------------------

    async def keep_original(self, job_id: int, index: int, png: bytes) -> str:
        return await self.originals.save(job_id, index, png)

    async def delete_original(self, path: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            await self.originals.delete(path)

    async def flagged(self, job: Job) -> None:
        """Post ``job``'s cards in the background: the scheduler does not wait on Discord."""
        task = asyncio.create_task(self.post_cards(job.id), name=f"review-cards-{job.id}")
        self._posting.add(task)
        task.add_done_callback(self._posting.discard)

    # --- cards -----------------------------------------------------------------------------

    async def post_cards(self, job_id: int) -> None:
        """A card for each of ``job_id``'s reviews that has none yet."""
        job = await self._repo.get_job(job_id)
        if job is None or self.settings.channel_id is None:
            return
        channel = await self._channel(self.settings.channel_id)
        for review in await self._repo.moderation.reviews_of_job(job_id):
            if review.card_message_id is not None or review.original_path is None:
                continue
            try:
                original = await self.originals.read(review.original_path)
                with InMemoryFiles() as uploads:
                    if review.image_index == OUTLINE_INDEX:  # not stored blurred: posted once
                        files = [uploads.file(original, OUTLINE_NAME, spoiler=True)]
                    else:
                        image = job.images[review.image_index]
                        blurred = await self._images.read(image.path)
                        name = f"job{job.id}_{image.seed}"
                        files = [
                            uploads.file(blurred, f"{name}_blurred.png"),
                            uploads.file(original, f"{name}.png", spoiler=True),
                        ]
                    message = await channel.send(
                        card_text(job, review),
                        files=files,
                        view=review_view(review.id),
                        allowed_mentions=discord.AllowedMentions.none(),
                    )
            except (*DISCORD_ERRORS, ValueError, IndexError):
                log.exception("review %s: its card could not be posted", review.id)
                continue
            await self._repo.moderation.set_card(review.id, message.id)

    async def post_missing_cards(self) -> None:
        """The cards a stopped bot never posted (it stopped between a result and its cards),
        once connected."""
        await self._client.wait_until_ready()
        try:
            pending = await self._repo.moderation.pending(limit=1000)
            for job_id in sorted({r.job_id for r in pending if r.card_message_id is None}):
                await self.post_cards(job_id)
        except Exception:
            log.exception("the review cards left by the last run could not be posted")

    async def show_decision(self, review: Review) -> None:
        """Say on the card who decided what, and disable its buttons."""
        job = await self._repo.get_job(review.job_id)
        if job is None or review.card_message_id is None or self.settings.channel_id is None:
            return
        channel = await self._channel(self.settings.channel_id)
        card = await channel.fetch_message(review.card_message_id)
        await card.edit(
            content=decided_text(job, review),
            view=review_view(review.id, decided=True),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    # --- decisions -------------------------------------------------------------------------

    def decision(self, state: ReviewState, moderator: discord.abc.User) -> Decision:
        """``state`` by ``moderator``; a kept original is deleted after the configured time."""
        later = None
        if state is not ReviewState.RELEASED:
            later = utcnow() + timedelta(hours=self.settings.delete_original_after_hours)
        return Decision(state, moderator.id, moderator.display_name, later)

    async def release(self, review: Review) -> None:
        """Put the original in place of the blurred image: in the job's message (with a note)
        and in the image folder; then delete the kept original."""
        job = await self._repo.get_job(review.job_id)
        if job is None or review.original_path is None:
            raise LookupError(f"review {review.id} has no job or original left")
        original = await self.originals.read(review.original_path)
        outline = review.image_index == OUTLINE_INDEX
        if not outline:  # an outline is posted once and not stored
            await self._images.replace(job.images[review.image_index].path, original)
        if job.result_message_id is not None:
            if outline:
                await self._release_outline(job, original)
            elif job.comparison:
                await self._redraw_grid(job, review.image_index)
            else:
                await self._edit_result(job, review.image_index)
        await self.delete_original(review.original_path)
        await self._repo.moderation.forget_originals([review.id])

    async def _edit_result(self, job: Job, index: int) -> None:
        """The job's result message with every image again (the released one unblurred, no
        longer a spoiler; the others as they were) and the release note. Its other pictures
        (an inpainting's outline, a depth map) stay as they were."""
        message = await self._result_message(job)
        names = {f"job{job.id}_{image.seed}.png" for image in job.images}
        files: list[discord.File | discord.Attachment] = [
            a for a in message.attachments if a.filename.removeprefix("SPOILER_") not in names
        ]
        note = RELEASED_NOTE.format(number=index + 1)
        with InMemoryFiles() as uploads:
            for image in job.images:  # read after the decision: the released one is not nsfw
                data = await self._images.read(image.path)
                name = f"job{job.id}_{image.seed}.png"
                files.insert(image.index, uploads.file(data, name, spoiler=image.nsfw))
            await self._edit_with_note(message, message.content, note, files)

    async def _release_outline(self, job: Job, original: bytes) -> None:
        """The job's message with its outline unblurred, no longer a spoiler; the images as
        they are."""
        message = await self._result_message(job)
        content = message.content.replace(OUTLINE_BLURRED, "")
        with InMemoryFiles() as uploads:
            files: list[discord.File | discord.Attachment] = [
                uploads.file(original, OUTLINE_NAME)
                if a.filename.removeprefix("SPOILER_") == OUTLINE_NAME
                else a
                for a in message.attachments
            ]
            await self._edit_with_note(message, content, OUTLINE_RELEASED_NOTE, files)

    async def _redraw_grid(self, job: Job, index: int) -> None:
        """A comparison's message with its grid drawn again from the stored panels (as the
        redelivery at start draws it): the released panel unblurred; the grid stays a spoiler
        while any other panel is blurred. The caption's count of flagged panels is brought up
        to date, and the note added."""
        message = await self._result_message(job)
        still = sum(image.nsfw for image in job.images)  # read after the decision
        # The caption's language: the one its count of flagged panels (one more before the
        # release) is written in. The labels are drawn in it again.
        locale = next(
            (
                code
                for code in MESSAGES["lesson.flagged"]
                if flagged_line(code, still + 1) in message.content
            ),
            None,
        )
        panels = [
            GeneratedImage(image.seed, await self._images.read(image.path), image.nsfw)
            for image in job.images
        ]
        result = Result(job.id, tuple(panels), job.model_revision_used, 0.0)
        model = await self._repo.get_model(job.model_name)
        family = model.family if model is not None else Family.SD
        drawn = await comparison_message(job, result, locale, family=family)
        if drawn is None:
            raise RuntimeError(f"the grid of job {job.id} could not be drawn again")
        limit = message.guild.filesize_limit if message.guild is not None else DEFAULT_LIMIT
        uploads, _ = fit(drawn[1], limit)
        before, after = flagged_line(locale, still + 1), flagged_line(locale, still)
        content = message.content.replace(before if after else f"\n{before}", after)
        note = PANEL_RELEASED_NOTE.format(label=panel_name(job, index, locale))
        with InMemoryFiles() as attached:
            files = [attached.file(f.data, f.name, spoiler=f.spoiler) for f in uploads]
            await self._edit_with_note(message, content, note, files)

    async def _result_message(self, job: Job) -> discord.Message:
        channel = await self._channel(job.channel_id)
        return await channel.fetch_message(job.result_message_id or 0)

    @staticmethod
    async def _edit_with_note(
        message: discord.Message,
        content: str,
        note: str,
        files: Sequence[discord.File | discord.Attachment],
    ) -> None:
        content = content if note in content else f"{content}\n{note}"
        await message.edit(content=content, attachments=files)

    async def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self._client.get_channel(channel_id) or await self._client.fetch_channel(
            channel_id
        )
        if not isinstance(channel, discord.abc.Messageable):
            raise ValueError(f"channel {channel_id} cannot hold messages")
        return channel
