"""The Upscale buttons, through the Discord stub with the real engine and the tiny upscaler.

The results to upscale are made small (64² pictures) so the tiny upscaler runs in seconds on a
CPU: a real /imagine result is at least 512², and four times that is minutes there. They are
written into the store as a previous run of the bot left them, finished but not yet posted,
so this run posts them (with their buttons) at start, as it does after any restart.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot.jobs.image_store import ImageStore
from bot.settings import ModelDefaults
from bot.store.models import JobKind, JobStatus
from bot.store.repository import NewImage, NewJob
from engine.protocol import AdapterKind, AdapterRef
from tests.bot.e2e.harness import CHANNEL, png_parameters
from tests.bot.e2e.test_image_to_image import stored_pixels
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text
from tests.bot.e2e.test_inpaint import pixels_of
from tests.bot.e2e.test_lost_io import migrated


def _png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(out, "PNG")
    return out.getvalue()


async def _finished_result(
    harness,
    repo,
    owner,
    channel_id: int,
    size: tuple[int, int],
    flags,
    prompt: str = "a lighthouse at dusk",
    **fields,
):
    """A text-to-image job a previous run finished, one image per flag, never posted."""
    job = await repo.create_job(
        NewJob(
            user_id=owner.id,
            user_name=owner.name,
            kind=JobKind.TEXT_TO_IMAGE,
            model_name="tiny-sd",
            model_source=str(harness.tiny.text_to_image),
            model_revision=None,
            prompt=prompt,
            negative_prompt="blurry",
            seeds=tuple(range(7, 7 + len(flags))),
            steps=2,
            width=size[0],
            height=size[1],
            guild_id=harness.stub.guild.id,
            channel_id=channel_id,
            **fields,
        )
    )
    await repo.mark_running_many([job.id])
    store = ImageStore(harness.settings.storage.output_dir)
    images = [
        NewImage(index, 7 + index, flagged, await store.save(job.id, index, _png(*size, index)))
        for index, flagged in enumerate(flags)
    ]
    await repo.mark_done(job.id, images, None)
    return job.id


async def test_upscale_a_chosen_image_of_a_result(harness, tiny_upscaler):
    stub = harness.stub
    harness.settings.models = ModelDefaults(
        default_text_to_image=str(harness.tiny.text_to_image),
        default_inpainting=str(harness.tiny.inpainting),
        default_upscaler=str(tiny_upscaler),
        upscale_noise_level=40,
        _env_file=None,  # type: ignore[call-arg]
    )
    owner, classmate = stub.add_user("ida"), stub.add_user("jo")
    channel = stub.channel(CHANNEL)
    await migrated(harness)
    async with harness.repository() as repo:
        # The second image was flagged: it is stored blurred.
        # Made with a LoRA, which the upscaler does not fit: the upscale runs without it.
        ink = AdapterRef("ink", AdapterKind.LORA, "/nowhere/ink.safetensors", 0.8)
        pair = await _finished_result(
            harness,
            repo,
            owner,
            channel.id,
            (64, 64),
            (False, True),
            prompt="a lighthouse <lora:ink:0.8> at dusk",
            adapters=(ink,),
        )
        wide = await _finished_result(harness, repo, owner, channel.id, (1024, 512), (False,))
    async with harness.bot() as bot:

        def posted(job_id: int):
            return lambda m: f"job:details:{job_id}" in m.custom_ids and m.attachments

        result = await stub.wait_for_channel_message(CHANNEL, posted(pair), timeout=RESULT_TIMEOUT)
        # One Upscale per image, on a row of their own; one image: "Upscale ×4".
        labels = {c["custom_id"]: c["label"] for c in result.buttons}
        assert labels[f"job:up1:{pair}"] == "Upscale 1" and labels[f"job:up2:{pair}"] == "Upscale 2"
        single = await stub.wait_for_channel_message(CHANNEL, posted(wide))
        assert {c["custom_id"]: c["label"] for c in single.buttons}[f"job:up1:{wide}"] == (
            "Upscale ×4"
        )

        # Refused, privately, and nothing queued: a flagged image, and one too large.
        refused = await stub.click(result, f"job:up2:{pair}", user=classmate)
        assert "flagged by the safety checker" in await ephemeral_text(refused)
        too_big = await stub.click(single, f"job:up1:{wide}", user=classmate)
        assert "at most 458,752 pixels (896×512)" in await ephemeral_text(too_big)
        assert await bot.repo.count_jobs(classmate.id) == 0

        # Anyone in the channel may upscale a result posted there, as with Vary.
        click = await stub.click(result, f"job:up1:{pair}", user=classmate)
        upscaled = await click.wait_for_message(
            lambda m: bool(m.png_attachments) and f"job:delete:{wide + 1}" in m.custom_ids,
            timeout=RESULT_TIMEOUT,
        )
        job = await bot.repo.get_job(wide + 1)
        upscaler = await bot.repo.default_model(JobKind.UPSCALE)
        assert job.status is JobStatus.DONE and job.kind is JobKind.UPSCALE
        assert (job.parent_job_id, job.user_id, job.model_name) == (
            pair,
            classmate.id,
            upscaler.name,
        )
        assert (job.prompt, job.negative_prompt, job.seeds, job.noise_level) == (
            "a lighthouse at dusk",
            "blurry",
            [7],
            40,
        )
        assert job.adapter_refs() == ()
        # Its input is the posted picture itself, copied into the input store.
        np.testing.assert_array_equal(
            stored_pixels(harness, job.image_ref), pixels_of(result.png_attachments[0].data)
        )
        (made,) = upscaled.png_attachments
        assert made.image_size == (256, 256)
        params = png_parameters(made.data)
        assert "Seed: 7, Size: 256x256" in params
        assert "Postprocess upscale by: 4, Noise level: 40" in params
        # No further Upscale (nor Reroll or Vary) under an upscale.
        assert set(upscaled.custom_ids) == {f"job:details:{job.id}", f"job:delete:{job.id}"}

        details = await stub.click(upscaled, f"job:details:{job.id}", user=classmate)
        text = await ephemeral_text(details)
        assert f"**Upscaled from:** #{pair}, seed 7" in text
        assert "**Size:** 256×256 from 64×64" in text and "**Noise level:** 40" in text
