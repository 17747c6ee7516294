"""Making, rerolling, cancelling and deleting jobs: the rules shared by commands and buttons."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

import discord
from sqlalchemy.exc import SQLAlchemyError

from bot.jobs.decoding import PictureDecoder
from bot.jobs.delivery import DISCORD_ERRORS, Delivery
from bot.jobs.families import family_settings
from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore, start_picture_from_result
from bot.jobs.job_request import Comparison, JobRequest, NewImages, Reroll, Variation
from bot.jobs.lessons import values_for
from bot.jobs.limits import Reservation, UsageLimits
from bot.jobs.requests import derived_job, new_job
from bot.jobs.scheduler import Scheduler
from bot.jobs.uploads import read_uploads
from bot.settings import CourseSettings, Settings
from bot.store.models import Job, JobStatus, Model, utcnow
from bot.store.repository import (
    Limits,
    NewJob,
    RateLimited,
    Repository,
    StoreError,
)
from bot.ui import render
from bot.ui.checks import is_admin
from bot.ui.errors import NotAllowed, UserFacingError, UserInputError
from bot.ui.i18n import t
from bot.ui.interactions import ALREADY_ACKNOWLEDGED, reply
from bot.ui.model_options import resolve_model
from bot.ui.validation import check_prompt_syntax, seeds_for, steps_with_one_left
from engine.protocol import DEFAULT_MASK_BLEND, FAMILIES, Family, GeneratedImage, JobKind, Result

log = logging.getLogger(__name__)

# Discord wants an answer within 3 s. A request that must first read a stored job or download
# pictures gets this long before the bot defers, so that its refusals can still be private.
ACK_DEADLINE_SECONDS = 1.5
# Results finished this recently but never posted are posted at the next start.
REDELIVER_WINDOW = timedelta(days=1)
SHUTTING_DOWN = "The bot is restarting; please try again in a minute. Nothing was queued."
RESUMED_NOTE = "your job #{job_id} resumed after a restart:"
INPUTS_NOT_STORED = "Your picture could not be stored on the bot's disk; please try again."
NOT_SAVED = "Your job could not be saved, so nothing was queued; please try again in a minute."


def comparison_job(
    parent: Job, kind: str, course: CourseSettings, interaction: discord.Interaction
) -> NewJob:
    """The job that compares ``parent``'s first image across the lesson's panels."""
    return derived_job(
        parent,
        interaction,
        seeds=(parent.seeds[0],),  # one seed: the panels differ only by the lesson's setting
        comparison=kind,
        comparison_values=values_for(kind, parent, course),
    )


class JobService:
    """A job's rules, for commands and buttons alike: who may do what, limits, the queue."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        scheduler: Scheduler,
        delivery: Delivery,
        images: ImageStore,
        inputs: InputStore,
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._scheduler = scheduler
        self._delivery = delivery
        self._images = images
        self._inputs = inputs
        self._decoder = PictureDecoder(settings.limits.decode_cpu_s)
        self._limits = UsageLimits()
        repo.on_job_ended(self._limits.job_ended)
        self.accepting = True  # false while shutting down: new work is refused, not lost

    def limits_for(self, user: discord.abc.User) -> Limits:
        """The limits ``user`` is held to: none for admins."""
        if is_admin(user, self._settings.discord):
            return Limits(max_queued_jobs=None, images_per_hour=None)
        limits = self._settings.limits
        return Limits(limits.max_queued_jobs, limits.images_per_hour)

    async def submit(self, interaction: discord.Interaction, request: JobRequest) -> Job | None:
        """Answer Discord, then write the job ``request`` describes and queue it.

        In order: what can be checked in memory (the bot accepting work, the model, the
        caller's limits, checked and reserved at once), then the public deferral ("thinking…"),
        then the job row, then the queue. A refusal before the deferral is a private reply (the
        error handler's); after it, it replaces the "thinking…" message, since the first
        followup of a public deferral cannot be private. A reroll, a lesson comparison or
        pictures to download must read before they can be judged: they get a head start of
        ``ACK_DEADLINE_SECONDS`` before the bot defers anyway.
        """
        if not self.accepting:
            raise UserFacingError(SHUTTING_DOWN)
        if not self._limits.loaded:
            await self._limits.load(self._repo)  # once; resume_after_restart does it at start
        try:
            new, files = await self._describe_in_time(interaction, request)
            reservation = self._reserve(interaction.user, new.image_count)
        except UserFacingError as error:
            if not interaction.response.is_done():
                raise  # the error handler replies privately
            await self._refuse_late(interaction, error)
            return None
        acknowledged = interaction.response.is_done() or await self._defer(interaction)
        try:
            job = await self._store(new, files, reservation)
        except UserFacingError as error:
            await self._refuse_late(interaction, error, deferred=acknowledged)
            return None
        # Without an answer Discord took, the interaction cannot be edited: the job is made
        # all the same (the student asked for it) and shown in the channel, with a mention.
        self._delivery.track(job, interaction if acknowledged else None)
        await self._scheduler.submit(job)
        return job

    @staticmethod
    async def _defer(interaction: discord.Interaction) -> bool:
        """Defer publicly ("thinking…"); False when Discord did not take it (the interaction
        expired, 10062). A connection dropped under the request leaves that unknown: the
        "thinking…" message, if Discord made it, says."""
        try:
            await interaction.response.defer(thinking=True)
            return True
        except discord.HTTPException as error:
            # Already acknowledged: an earlier deferral took, though its answer was lost.
            if error.code == ALREADY_ACKNOWLEDGED:
                return True
            log.warning("interaction %s could not be deferred: %s", interaction.id, error)
            return False
        except DISCORD_ERRORS as error:
            log.warning(
                "interaction %s: deferring it lost the connection: %s", interaction.id, error
            )
        try:
            await interaction.original_response()
            return True
        except DISCORD_ERRORS:
            return False

    async def reroll(
        self, job_id: int | None, seed: int | None, interaction: discord.Interaction
    ) -> Job | None:
        """A new job with the settings of ``job_id`` (default: the caller's latest job) and a
        new (or the given) seed per image, counted against the caller's limits."""
        return await self.submit(interaction, Reroll(job_id, seed))

    @property
    def limits(self) -> UsageLimits:
        """The callers' limits, in memory (tests look at them)."""
        return self._limits

    def _reserve(self, user: discord.abc.User, images: int) -> Reservation:
        """Take the caller's place for a job of ``images`` images (no await: nothing can come
        between the check and the taking), or refuse with a message for them."""
        try:
            return self._limits.reserve(user.id, images, self.limits_for(user))
        except RateLimited as error:
            raise UserFacingError(
                f"{error} {'All of them' if error.used < error.limit else 'More'} will fit "
                f"{render.relative_time(error.retry_at)}."
            ) from None
        except StoreError as error:
            raise UserFacingError(str(error)) from None

    async def _describe_in_time(
        self, interaction: discord.Interaction, request: JobRequest
    ) -> tuple[NewJob, list[tuple[str, bytes]]]:
        """``_describe``, deferring if it reads for longer than the head start."""
        if isinstance(request, NewImages) and request.uploads is None:
            # Memory only (the models table is cached by the store): no head start needed.
            return await self._describe(interaction, request)
        describing = asyncio.create_task(self._describe(interaction, request))
        await asyncio.wait({describing}, timeout=ACK_DEADLINE_SECONDS)
        if not describing.done() and not await self._defer(interaction):
            log.info("interaction %s: going on without an answer to edit", interaction.id)
        return await describing

    async def _store(
        self, new: NewJob, files: list[tuple[str, bytes]], reservation: Reservation
    ) -> Job:
        """Write the job row (with its usage row), then its input files; the reservation is
        released if the row could not be written."""
        try:
            job = await self._repo.create_job(new, counted_at=reservation.counted_at)
        except BaseException as error:
            self._limits.release(reservation)
            if isinstance(error, SQLAlchemyError | OSError):
                log.exception("could not write a job for user %s", new.user_id)
                raise UserFacingError(NOT_SAVED) from None
            raise
        self._limits.written(reservation, job.id)
        try:
            for ref, data in files:
                await self._inputs.write(ref, data)
        except OSError:
            log.exception("job %s: could not store its inputs", job.id)
            await self._repo.mark_failed(job.id, INPUTS_NOT_STORED)
            raise UserFacingError(INPUTS_NOT_STORED) from None
        return job

    @staticmethod
    async def _refuse_late(
        interaction: discord.Interaction, error: UserFacingError, *, deferred: bool = True
    ) -> None:
        """A refusal after the public deferral: it replaces the "thinking…" message (or goes
        to the channel, with a mention, when there is no deferral to replace)."""
        if deferred:
            await interaction.edit_original_response(content=f"{interaction.user.mention} {error}")
        else:
            await reply(interaction, str(error), ephemeral=False)

    async def _describe(
        self, interaction: discord.Interaction, request: JobRequest
    ) -> tuple[NewJob, list[tuple[str, bytes]]]:
        """The job row ``request`` asks for, and the input files to store once it is written.

        A job made from an earlier one (reroll, lesson, Vary) takes its prompts as stored, and a
        job stored before weights were read may hold brackets that do not read now: refused
        here, naming the place, rather than failing once queued."""
        new, files = await self._describe_request(interaction, request)
        if new.parent_job_id is not None:
            try:
                check_prompt_syntax(new.prompt, what="prompt")
                check_prompt_syntax(new.negative_prompt, what="negative prompt")
            except UserInputError as error:
                raise UserInputError(
                    f"Job #{new.parent_job_id} cannot be made again as it is: {error} "
                    "Use /imagine with the prompt corrected."
                ) from None
        return new, files

    async def _describe_request(
        self, interaction: discord.Interaction, request: JobRequest
    ) -> tuple[NewJob, list[tuple[str, bytes]]]:
        """The job row ``request`` asks for, and the input files to store once it is written."""
        match request:
            case NewImages(kind=kind, model=name, settings=settings, uploads=uploads, given=given):
                model = await resolve_model(self._repo, name, kind.model_kind)
                settings = family_settings(
                    model.family, kind, settings, given, self._settings.limits.bounds()
                )
                read = None
                if uploads:
                    # Decoding costs CPU the user chooses: a caller over their limits is refused
                    # before any picture is read (the place is taken for real after).
                    self._limits.release(self._reserve(interaction.user, len(settings["seeds"])))
                    read = await read_uploads(uploads, self._decoder)
                fields = {**settings, **(read.fields if read else {})}
                return new_job(interaction, model, kind, **fields), read.files if read else []
            case Reroll(job_id=job_id, seed=seed):
                parent = await self._reroll_parent(job_id, interaction)
                await self._reuse_inputs(parent)
                seeds = seeds_for(seed, len(parent.seeds))
                return derived_job(parent, interaction, seeds=seeds), []
            case Comparison(job_id=job_id, kind=kind):
                parent = await self.get(job_id)
                if parent.comparison:
                    raise UserInputError(t(interaction, "lesson.not_twice", job_id=job_id))
                model = await self.require_model_offered(parent)
                if model.family is not Family.SD:
                    # Their panels vary guidance, steps and schedulers the way SD 1.x takes them.
                    raise UserInputError(
                        f"The course lessons run on {FAMILIES[Family.SD].label} models; "
                        f"job #{job_id} used {FAMILIES[model.family].label}."
                    )
                await self._reuse_inputs(parent)
                course = self._settings.course
                return comparison_job(parent, kind, course, interaction), []
            case Variation(job_id=job_id, strength=strength):
                parent = await self.get_visible(job_id, interaction, doing="vary")
                return await self._variation(parent, strength, interaction)

    async def _variation(
        self, parent: Job, strength: float, interaction: discord.Interaction
    ) -> tuple[NewJob, list[tuple[str, bytes]]]:
        """Image-to-image from ``parent``'s first image: its prompt and settings, a new seed,
        on its own model when that makes images from text (else the default one). The image
        is copied into the input store, so the new job (and its rerolls) keep it."""
        if parent.comparison:
            raise UserInputError(
                f"Job #{parent.id} is a comparison grid; use Vary under an ordinary result."
            )
        if not parent.images:
            raise UserFacingError(f"Job #{parent.id} has no image to vary.")
        try:
            png = await self._images.read(parent.images[0].path)
        except (OSError, ValueError):  # ValueError: a path outside the folder
            raise UserFacingError(
                f"Job #{parent.id}'s image is no longer stored on the bot, so it cannot be "
                "varied. Attach it to /imagine as `image` instead."
            ) from None
        ref, data = await asyncio.to_thread(start_picture_from_result, png)
        model = await self._repo.get_model(parent.model_name)
        if model is not None and model.enabled and model.kind == JobKind.TEXT_TO_IMAGE:
            on_model: dict[str, object] = {}  # the parent's, pinned to the revision it ran
        else:
            # An inpainting checkpoint cannot start from a whole picture.
            default = await resolve_model(self._repo, None, JobKind.TEXT_TO_IMAGE)
            on_model = dict(
                model_name=default.name,
                model_source=default.source,
                model_revision=default.revision,
            )
        new = derived_job(
            parent,
            interaction,
            kind=JobKind.IMAGE_TO_IMAGE,
            seeds=seeds_for(None, 1),
            steps=steps_with_one_left(parent.steps, strength),
            strength=strength,
            image_ref=ref,
            mask_ref=None,
            mask_prompt=None,
            mask_blend=DEFAULT_MASK_BLEND,
            **on_model,
        )
        return new, [(ref, data)]

    async def _reroll_parent(self, job_id: int | None, interaction: discord.Interaction) -> Job:
        """The job to reroll: one visible here (made in this channel, or the caller's own;
        admins: any), whose model is still offered."""
        user = interaction.user
        if job_id is None:
            parent = await self._repo.latest_job(user.id)
            if parent is None:
                raise UserFacingError(
                    "You have no jobs to reroll yet; make one with /imagine or /inpaint."
                )
        else:
            parent = await self.get_visible(job_id, interaction, doing="reroll")
        await self.require_model_offered(parent)
        return parent

    async def vary(
        self, job_id: int, strength: float, interaction: discord.Interaction
    ) -> Job | None:
        """A new image from job ``job_id``'s first image, image-to-image at ``strength``, with
        a new seed; counted against the caller's limits."""
        return await self.submit(interaction, Variation(job_id, strength))

    async def _reuse_inputs(self, parent: Job) -> None:
        """Mark ``parent``'s picture and mask as used now, so retention keeps them for the new
        job; refuse when they are gone (retention deleted them, or the job's owner did)."""
        again = "/inpaint" if parent.kind == JobKind.INPAINT else "/imagine (as `image`)"
        for ref in (parent.image_ref, parent.mask_ref):
            if ref is not None and not await self._inputs.touch(ref):
                days = self._settings.storage.retention_days
                kept = f" (uploads are kept {days} days after their last use)" if days else ""
                raise UserFacingError(
                    f"Job #{parent.id}'s picture is no longer stored on the bot{kept}, so it "
                    f"cannot be made again. Use {again} with the picture again."
                )

    async def get_visible(
        self, job_id: int, interaction: discord.Interaction, *, doing: str
    ) -> Job:
        """The job, if the caller may build on it here: their own, one made in this channel
        (or a thread of it), or any job for an admin. ``doing`` names the action in the refusal,
        e.g. "reroll" or "have the recipe of"."""
        job = await self.get(job_id)
        user = interaction.user
        visible = job.user_id == user.id or job.channel_id == interaction.channel_id
        if not visible and not is_admin(user, self._settings.discord):
            raise NotAllowed(
                f"Job #{job_id} was not made in this channel. You can {doing} your own jobs "
                "and the jobs made here."
            )
        return job

    async def require_model_offered(self, parent: Job) -> Model:
        """Refuse new work from a job whose model an admin has since disabled or removed."""
        model = await self._repo.get_model(parent.model_name)
        if model is None or not model.enabled:
            raise UserFacingError(
                f"Job #{parent.id} used the model {parent.model_name}, which is no longer "
                "offered, so it cannot be made again."
            )
        return model

    async def get(self, job_id: int) -> Job:
        job = await self._repo.get_job(job_id)
        if job is None:
            raise UserFacingError(f"Job #{job_id} no longer exists (it may have been deleted).")
        return job

    async def get_own(self, job_id: int, user: discord.abc.User) -> Job:
        """The job, if ``user`` owns it or is an admin."""
        job = await self.get(job_id)
        if job.user_id != user.id and not is_admin(user, self._settings.discord):
            raise NotAllowed(
                f"Job #{job_id} belongs to <@{job.user_id}>; only they or an admin can do that."
            )
        return job

    async def cancel(self, job_id: int, user: discord.abc.User) -> str:
        job = await self.get_own(job_id, user)
        if job.status.is_final:
            return f"Job #{job_id} has already ended ({job.status.value})."
        if await self._scheduler.cancel(job_id):
            return f"Cancelling job #{job_id}."
        return f"Job #{job_id} is not in the queue any more."

    async def delete(self, job_id: int, user: discord.abc.User) -> Job:
        """Remove a finished job's images, uploads no other job uses, and row. The caller
        removes the message."""
        job = await self.get_own(job_id, user)
        if not job.status.is_final:
            raise UserFacingError(f"Job #{job_id} is still {job.status.value}; cancel it first.")
        try:
            deleted = await self._repo.delete_job(job_id)
        except StoreError as error:
            raise UserFacingError(str(error)) from None
        for image in deleted.images:
            await self._images.delete(image.path)
        await self._remove_uploads(deleted)
        return deleted

    async def _remove_uploads(self, job: Job) -> None:
        """Delete a deleted job's picture and mask, unless another job refers to them (its
        rerolls share them); if that fails, retention deletes them later."""
        refs = [ref for ref in (job.image_ref, job.mask_ref) if ref]
        if not refs:
            return
        checked_at = time.time()  # a job storing or reusing them from now on keeps them
        try:
            in_use = await self._repo.referenced_inputs(among=refs)
            await self._inputs.remove_unused(refs, keep=in_use, unused_since=checked_at)
        except (OSError, ValueError, SQLAlchemyError):
            log.exception("job %s: could not delete its uploads", job.id)

    async def resume_after_restart(self) -> list[Job]:
        """Load the limits from the store, post what the last run finished but never showed
        (results, failures, cancellations), and queue again what it left queued or running.
        Owners are told in the channel, with a mention; the message the last run showed a
        job in is cut down to a line pointing to the new one (no Cancel button left there).
        One job that cannot be shown (its images are gone) never stops the others."""
        await self._limits.load(self._repo)
        # First, so that a job it fails (started too often) has its failure posted below.
        jobs = list(await self._repo.requeue_interrupted())
        ended = await self._repo.list_undelivered(utcnow() - REDELIVER_WINDOW)
        for job in ended:
            try:
                await self._show_end_again(job)
            except Exception:
                log.exception("job %s: its end could not be shown again", job.id)
        for job in jobs:
            note = RESUMED_NOTE.format(job_id=job.id)
            self._delivery.track(job, None, note=note, left_behind=job.status_message_id)
            await self._scheduler.submit(job)
        return [*ended, *jobs]

    async def _show_end_again(self, job: Job) -> None:
        """Post a job's end that the last run did not record as posted, unless it was."""
        if (shown := await self._delivery.shown_before(job)) is not None:
            log.info("job %s: its end was posted (message %s) but not recorded", job.id, shown)
            await self._repo.set_result_message(job.id, shown)
            return
        note = RESUMED_NOTE.format(job_id=job.id)
        self._delivery.track(job, None, note=note, left_behind=job.status_message_id)
        match job.status:
            case JobStatus.FAILED:
                await self._delivery.failed(job)
            case JobStatus.CANCELLED:
                await self._delivery.cancelled(job)
            case _:
                try:
                    result = await self._saved_result(job)
                except (OSError, ValueError) as error:  # ValueError: a path outside the folder
                    log.error("job %s: its images cannot be read: %s", job.id, error)
                    await self._delivery.images_lost(job)
                    return
                await self._delivery.finished(job, result)

    async def _saved_result(self, job: Job) -> Result:
        images = tuple(
            [
                GeneratedImage(image.seed, await self._images.read(image.path), image.nsfw)
                for image in job.images
            ]
        )
        took = (
            (job.finished_at - job.started_at).total_seconds()
            if job.started_at and job.finished_at
            else 0.0
        )
        return Result(job.id, images, job.model_revision_used, took)
