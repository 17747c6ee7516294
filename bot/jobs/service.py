"""Making, rerolling, cancelling and deleting jobs: the rules shared by commands and buttons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any

import discord
from sqlalchemy.exc import SQLAlchemyError

from bot.jobs import xy_plot
from bot.jobs.adapters import require_still_offered, resolve_adapters
from bot.jobs.decoding import PictureDecoder
from bot.jobs.delivery import DISCORD_ERRORS, Delivery
from bot.jobs.families import family_settings
from bot.jobs.image_store import ImageStore
from bot.jobs.inputs import InputStore, start_picture_from_result
from bot.jobs.job_request import Comparison, JobRequest, NewImages, Reroll, Upscale, Variation
from bot.jobs.lessons import applies, values_for
from bot.jobs.limits import Reservation, UsageLimits
from bot.jobs.prompt_screen import PromptScreen
from bot.jobs.requests import derived_job, new_job
from bot.jobs.scheduler import Scheduler
from bot.jobs.uploads import read_uploads
from bot.jobs.xy_families import (
    check_denoising_left_on_axes,
    check_family_axes,
    one_family,
)
from bot.jobs.xy_plot import stored
from bot.jobs.xy_values import Axis
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
from engine.prompt_syntax import without_loras
from engine.protocol import (
    BOUNDS,
    DEFAULT_MASK_BLEND,
    FAMILIES,
    Family,
    GeneratedImage,
    JobKind,
    Result,
)

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
# What a lesson varies, for the refusal on a family without it (``bot.jobs.lessons.applies``).
_LESSON_SETTING = {"guidance": "guidance scale", "schedulers": "choice of sampler"}


def comparison_job(
    parent: Job,
    kind: str,
    course: CourseSettings,
    interaction: discord.Interaction,
    family: Family = Family.SD,
) -> NewJob:
    """The job that compares ``parent``'s first image across the lesson's panels, as its
    model's ``family`` takes them."""
    return derived_job(
        parent,
        interaction,
        seeds=(parent.seeds[0],),  # one seed: the panels differ only by the lesson's setting
        comparison=kind,
        comparison_values=values_for(kind, parent, course, family),
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
        originals: ImageStore | None = None,
    ) -> None:
        self._settings = settings
        self._originals = originals  # flagged images' originals (bot.jobs.reviews)
        self._repo = repo
        self._scheduler = scheduler
        self._delivery = delivery
        self._images = images
        self._inputs = inputs
        self._decoder = PictureDecoder(settings.limits.decode_cpu_s)
        self._limits = UsageLimits()
        self._screen = PromptScreen(settings.moderation.screened_words())
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
        if isinstance(request, NewImages):  # before any upload is read
            self._screen.check(str(request.settings.get("prompt", "")))
        new, files = await self._describe_request(interaction, request)
        # Also a job made from an earlier one: a word blocked since then is blocked now.
        self._screen.check(new.prompt)
        if new.parent_job_id is not None:
            await require_still_offered(self._repo, new.parent_job_id, new.adapters)
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
            case NewImages(
                kind=kind, model=name, settings=settings, uploads=uploads, axes=axes, given=given
            ):
                model = await resolve_model(self._repo, name, kind.model_kind)
                if axes:
                    model, grid = await self._grid(axes, model, kind)
                    settings = {**settings, **grid}
                settings = family_settings(
                    model.family, kind, settings, given, self._settings.limits.bounds()
                )
                if axes and kind.takes_picture:
                    check_denoising_left_on_axes(axes, settings["steps"], settings["strength"])
                read = None
                if uploads:
                    # Decoding costs CPU the user chooses: a caller over their limits is refused
                    # before any picture is read (the place is taken for real after).
                    counted = new_job(interaction, model, kind, **settings).image_count
                    self._limits.release(self._reserve(interaction.user, counted))
                    read = await read_uploads(uploads, self._decoder)
                fields = {**settings, **(read.fields if read else {})}
                fields["adapters"] = await resolve_adapters(
                    self._repo,
                    settings["prompt"],
                    settings.get("negative_prompt", ""),
                    model.name,
                    model.family.value,
                )
                if fields["adapters"] and kind is JobKind.DEPTH_TO_IMAGE:
                    # A depth checkpoint is SD 2 with a fifth input channel: no offered
                    # adapter fits it, and loading one would fail once queued.
                    raise UserInputError(
                        "LoRAs and embeddings work with /imagine, /inpaint and /compare; "
                        "/depth runs on a depth model they do not fit. Take them out of "
                        "the prompt."
                    )
                return new_job(interaction, model, kind, **fields), read.files if read else []
            case Reroll(job_id=job_id, seed=seed):
                parent = await self._reroll_parent(job_id, interaction)
                await self._reuse_inputs(parent)
                seeds = seeds_for(seed, len(parent.seeds))
                if xy_plot.is_grid(parent):
                    return await self._grid_again(parent, seeds, interaction), []
                return derived_job(parent, interaction, seeds=seeds), []
            case Comparison(job_id=job_id, kind=kind):
                parent = await self.get(job_id)
                if parent.comparison:
                    raise UserInputError(t(interaction, "lesson.not_twice", job_id=job_id))
                model = await self.require_model_offered(parent)
                if not applies(kind, model.family):
                    # Its button is not shown under such a result; an old message may have it.
                    raise UserInputError(
                        f"Job #{job_id} used {FAMILIES[model.family].label}, which has no "
                        f"{_LESSON_SETTING[kind]} to compare."
                    )
                await self._reuse_inputs(parent)
                course = self._settings.course
                return comparison_job(parent, kind, course, interaction, model.family), []
            case Variation(job_id=job_id, strength=strength):
                parent = await self.get_visible(job_id, interaction, doing="vary")
                return await self._variation(parent, strength, interaction)
            case Upscale(job_id=job_id, index=index):
                # The same rule as Vary: a result posted here is anyone's to build on.
                parent = await self.get_visible(job_id, interaction, doing="upscale")
                return await self._upscale(parent, index, interaction)

    async def _grid(
        self, axes: tuple[Axis, ...], model: Model, kind: JobKind
    ) -> tuple[Model, dict[str, Any]]:
        """A /compare grid's job fields; on a model axis, each name must be an enabled model of
        the kind (refused with the list of those offered), all of one family, and the first is
        the job's own. Every axis must be one the model's family takes."""
        models: list[Model] = []
        for axis in axes:
            if axis.kind == "model":
                models = [
                    await resolve_model(self._repo, str(name), kind.model_kind)
                    for name in axis.values
                ]
                model = models[0]
        family = one_family(models) if models else model.family
        check_family_axes(axes, family)
        return model, {"comparison": xy_plot.XY, "comparison_values": stored(axes, models)}

    async def _grid_again(
        self, parent: Job, seeds: tuple[int, ...], interaction: discord.Interaction
    ) -> NewJob:
        """A /compare grid again with a new seed for every panel; its axes as they were."""
        if not xy_plot.rerolls(parent):
            raise UserInputError(
                f"Job #{parent.id}'s seeds are one of its axes, so a new seed would change "
                "nothing; use /compare with other seeds."
            )
        for axis in xy_plot.axes(parent):
            for model in axis.models:
                offered = await self._repo.get_model(model.name)
                if offered is None or not offered.enabled:
                    raise UserFacingError(
                        f"Job #{parent.id} compares the model {model.name}, which is no longer "
                        "offered, so it cannot be made again."
                    )
        return derived_job(
            parent,
            interaction,
            seeds=seeds,
            comparison=parent.comparison,
            comparison_values=tuple(parent.comparison_values or ()),
        )

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

    async def _upscale(
        self, parent: Job, index: int, interaction: discord.Interaction
    ) -> tuple[NewJob, list[tuple[str, bytes]]]:
        """The upscaler on ``parent``'s image ``index``: its prompt, negative prompt, steps,
        guidance and scheduler, the image's own seed, the operator's noise level, on the
        default upscaler. The stored result (never an upload) is copied into the input store,
        so the new job and its recipe keep it.

        Refused: an upscale (no Upscale of an upscale), a comparison grid, an image the safety
        checker flagged (it is stored blurred), one no longer stored, one too large."""
        if parent.kind == JobKind.UPSCALE:
            raise UserInputError(
                f"Job #{parent.id} is already an upscale; it is not upscaled again."
            )
        if parent.comparison:
            raise UserInputError(f"Job #{parent.id} is a comparison grid; it is not upscaled.")
        images = sorted(parent.images, key=lambda image: image.index)
        if index >= len(images):
            raise UserFacingError(f"Job #{parent.id} has no image {index + 1} to upscale.")
        image = images[index]
        if image.nsfw:
            raise UserFacingError(
                f"Image {index + 1} of job #{parent.id} was flagged by the safety checker and "
                "is kept only blurred, so it is not upscaled."
            )
        pixels = parent.width * parent.height
        if pixels > BOUNDS.upscale_pixels.max:
            raise UserInputError(
                f"Job #{parent.id}'s images are {parent.width}×{parent.height}; the upscaler "
                f"takes at most {BOUNDS.upscale_pixels.max:,} pixels (896×512), so they are "
                "not upscaled."
            )
        try:
            png = await self._images.read(image.path)
        except (OSError, ValueError):  # ValueError: a path outside the folder
            raise UserFacingError(
                f"Job #{parent.id}'s image is no longer stored on the bot, so it cannot be "
                "upscaled."
            ) from None
        ref, data = await asyncio.to_thread(start_picture_from_result, png)
        upscaler = await resolve_model(self._repo, None, JobKind.UPSCALE)
        new = derived_job(
            parent,
            interaction,
            kind=JobKind.UPSCALE,
            # The upscaler is no model a LoRA or embedding fits: the prompt guides it as
            # words only, without the parent's <lora:…> (which the engine checks against
            # the job's adapters).
            prompt=" ".join(without_loras(parent.prompt).split()),
            adapters=(),
            seeds=(image.seed,),
            strength=BOUNDS.strength.default,  # unused: an upscale runs all its steps
            noise_level=self._settings.models.upscale_noise_level,
            image_ref=ref,
            mask_ref=None,
            mask_prompt=None,
            mask_blend=DEFAULT_MASK_BLEND,
            model_name=upscaler.name,
            model_source=upscaler.source,
            model_revision=upscaler.revision,
        )
        return new, [(ref, data)]

    async def upscale(
        self, job_id: int, index: int, interaction: discord.Interaction
    ) -> Job | None:
        """Job ``job_id``'s image ``index`` four times larger; one image against the caller's
        limits."""
        return await self.submit(interaction, Upscale(job_id, index))

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
        again = {JobKind.INPAINT: "/inpaint", JobKind.DEPTH_TO_IMAGE: "/depth"}.get(
            parent.kind, "/imagine (as `image`)"
        )
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
        reviews = await self._repo.moderation.reviews_of_job(job_id)
        if any(not review.state.decided for review in reviews):
            # Deleting it would take the image away from the moderators' review.
            raise UserFacingError(
                f"Job #{job_id} has an image waiting for a moderator's review; it can be "
                "deleted once that is decided."
            )
        try:
            deleted = await self._repo.delete_job(job_id)
        except StoreError as error:
            raise UserFacingError(str(error)) from None
        for image in deleted.images:
            await self._images.delete(image.path)
        for review in reviews:
            if review.original_path and self._originals is not None:
                with contextlib.suppress(OSError, ValueError):
                    await self._originals.delete(review.original_path)
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
                await self._delivery.finished(job, result, [i.path for i in job.images])

    async def _saved_result(self, job: Job) -> Result:
        """The result the last run stored, to post again. Its pictures stay on disk: delivery
        streams the stored files (a restart after a burst may have hundreds of results to
        post), so their bytes here are empty and only the files' presence is checked."""
        for image in job.images:
            await asyncio.to_thread(self._images.resolve(image.path).stat)  # OSError: gone
        images = tuple(GeneratedImage(image.seed, b"", image.nsfw) for image in job.images)
        took = (
            (job.finished_at - job.started_at).total_seconds()
            if job.started_at and job.finished_at
            else 0.0
        )
        return Result(job.id, images, job.model_revision_used, took)
