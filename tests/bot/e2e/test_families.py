"""SDXL and FLUX.1 schnell through the Discord stub, with the real engine on tiny pipelines:
an admin adds each (its family detected) and a LoRA for SDXL, students generate with each (SDXL
with its LoRA and a weighted prompt past CLIP's window, kept by a reroll), get a refusal naming
the family for an option, a LoRA or a prompt it does not take (FLUX.1: weights, and prompts
past its T5 window), get each family's own recipe, the lesson buttons that apply to it, and
/compare grids whose axes are checked against the family, and /inpaint on FLUX.1."""

from __future__ import annotations

import numpy as np

from bot.store.models import JobKind, JobStatus
from engine.protocol import Family
from tests.bot.e2e.harness import ADMIN_ROLE, CHANNEL, png_parameters, png_size
from tests.bot.e2e.test_admin import models, private
from tests.bot.e2e.test_compare import compare, is_xy_grid
from tests.bot.e2e.test_course import GRID_TIMEOUT
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png
from tests.bot.e2e.test_inpaint import attached, pixels_of
from tests.bot.pictures import box_mask, encode, scene
from tests.fixtures.tiny_adapters import FamilyAdapters, TinyAdapters
from tests.fixtures.tiny_families import TinyFamilies


async def test_each_family_is_added_generates_and_refuses_what_it_does_not_take(
    harness,
    tiny_families: TinyFamilies,
    tiny_adapters: TinyAdapters,
    family_adapters: FamilyAdapters,
):
    async with harness.bot() as bot:
        stub = harness.stub
        prof, student = stub.add_user("prof", roles=[ADMIN_ROLE]), stub.add_user("ada")
        for name, folder, family in (
            ("xl", tiny_families.sdxl, "SDXL"),
            ("schnell", tiny_families.flux, "FLUX.1 schnell"),
        ):
            added = await models(
                stub, "add", prof, name=name, source=str(folder), kind="text_to_image"
            )
            assert f"Family: {family}." in await private(added, "Added")
        assert (await bot.repo.get_model("schnell")).family is Family.FLUX
        for name, source, family in (
            ("ink", tiny_adapters.lora, None),
            ("xl-ink", family_adapters.sdxl_lora, "sdxl"),
        ):
            options = {"family": family} if family else {}
            added = await models(
                stub, "add", prof, name=name, source=str(source), kind="lora", **options
            )
            await private(added, "Added")

        # Refused before anything is written, naming the family.
        refused = await stub.invoke_slash(
            "imagine",
            {"prompt": "a fox", "model": "schnell", "negative_prompt": "blurry"},
            user=student,
            channel=CHANNEL,
        )
        assert "FLUX.1 schnell takes no negative prompt" in await ephemeral_text(refused)
        refused = await stub.invoke_slash(
            "imagine",
            {"prompt": "a fox", "model": "schnell", "guidance": 5.0},
            user=student,
            channel=CHANNEL,
        )
        assert "FLUX.1 schnell takes no guidance" in await ephemeral_text(refused)
        refused = await stub.invoke_slash(
            "imagine",
            {"prompt": "a fox <lora:ink:1>", "model": "xl"},
            user=student,
            channel=CHANNEL,
        )
        assert (
            "The LoRA “ink” is made for Stable Diffusion 1.x/2.x models; xl is a SDXL model. "
            "LoRAs that fit it: xl-ink."
        ) in await ephemeral_text(refused)
        refused = await stub.invoke_slash(
            "imagine", {"prompt": "a (fox:1.3)", "model": "schnell"}, user=student, channel=CHANNEL
        )
        assert "FLUX.1 schnell does not read prompt weights" in await ephemeral_text(refused)
        assert await bot.repo.get_job(1) is None

        # Left out, the guidance and size are the family's own (one step keeps it quick on a
        # CPU at FLUX's megapixel size). SDXL starts from a picture, whose shape decides, with
        # its LoRA and a weighted prompt past CLIP's window (compel over both its encoders).
        handle = await stub.invoke_slash(
            "imagine",
            {"prompt": "a fox", "model": "schnell", "seed": 3, "steps": 1},
            user=student,
            channel=CHANNEL,
        )
        from_text = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        picture = {"image": attached("fox.png", encode(scene((64, 64))))}
        options = {"model": "xl", "seed": 4, "steps": 2, "strength": 0.5, "negative_prompt": "x"}
        weighted_long = "a (fox:1.3), " + " ".join(["cat"] * 80)
        styled = f"{weighted_long} <lora:xl-ink:0.8>"
        handle = await stub.invoke_slash(
            "imagine",
            {"prompt": styled, **options},
            user=student,
            channel=CHANNEL,
            attachments=picture,
        )
        from_picture = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        (made,) = from_picture.png_attachments
        assert png_parameters(made.data).startswith(styled + "\n")
        details = await stub.click(from_picture, "job:details:2", user=student)
        assert "**LoRAs and embeddings:** xl-ink (LoRA, 0.8)" in await ephemeral_text(details)
        again = await stub.invoke_slash("reroll", {"seed": 4}, user=student, channel=CHANNEL)
        rerolled = await again.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert [a.name for a in (await bot.repo.get_job(3)).adapter_refs()] == ["xl-ink"]
        np.testing.assert_array_equal(
            pixels_of(rerolled.png_attachments[0].data), pixels_of(made.data)
        )
        flux, sdxl = await bot.repo.get_job(1), await bot.repo.get_job(2)
        assert flux.status is JobStatus.DONE and sdxl.status is JobStatus.DONE
        assert (flux.guidance, flux.width, flux.height) == (0.0, 1024, 1024)
        assert png_size(from_text.png_attachments[0].data) == (1024, 1024)
        assert sdxl.kind is JobKind.IMAGE_TO_IMAGE and (sdxl.steps, sdxl.guidance) == (2, 7.0)
        assert png_size(from_picture.png_attachments[0].data) == (sdxl.width, sdxl.height)
        assert sdxl.prompt == styled
        assert "read in 3 windows of up to 75 tokens" in from_picture.content

        # Past the 256 tokens FLUX.1's T5 reads (the tiny T5 spells "zebra" letter by letter):
        # the job ends saying so, instead of a picture of a silently cut prompt.
        handle = await stub.invoke_slash(
            "imagine",
            {"prompt": " ".join(["zebra"] * 50), "model": "schnell", "steps": 1},
            user=student,
            channel=CHANNEL,
        )
        await handle.wait_for_message(
            lambda m: "reads at most 256 tokens of a prompt and yours is 301" in m.content,
            timeout=RESULT_TIMEOUT,
        )
        assert (await bot.repo.get_job(4)).status is JobStatus.FAILED

        # Each family's recipe builds its own pipeline and sampler.
        asked = await stub.invoke_slash("recipe", {"job": 1}, user=prof, channel=CHANNEL)
        reply = await asked.wait_for_message(lambda m: bool(m.attachments))
        script = reply.attachments[0].data.decode()
        assert "FlowMatchEulerDiscreteScheduler" in script and "guidance_scale" not in script
        assert str(tiny_families.flux) in script  # an admin's script names the folder

        # The lessons that apply: FLUX.1 schnell has no CFG to vary and one sampler.
        def lessons(message) -> list[str]:
            return [c["custom_id"] for c in message.components[1]["components"]]

        assert lessons(from_text) == ["job:steps:1", "job:denoise:1"]
        assert lessons(from_picture) == [f"job:{b}:2" for b in ("cfg", "steps", "sched", "denoise")]

        # /compare checks its axes against the model's family, before anything is written.
        for options, expected in (
            ({"model": "schnell", "x": "guidance", "x_values": "3, 7"}, "guidance-distilled"),
            ({"model": "schnell", "x": "steps", "x_values": "1, 8"}, "steps 8 is out of range"),
            ({"model": "schnell", "x": "scheduler", "x_values": "euler, ddim"}, "own sampler"),
            (
                {"x": "model", "x_values": "xl, schnell"},
                "xl (SDXL), schnell (FLUX.1 schnell)",
            ),
        ):
            refused = await compare(stub, student, **options)
            assert expected in await ephemeral_text(refused), options
        assert await bot.repo.count_jobs(student.id) == 4

        # A FLUX grid: the typed steps kept, guidance and size the family's.
        handle = await compare(stub, student, model="schnell", x="seed", x_values="3, 5", steps=1)
        await handle.wait_for_message(is_xy_grid, timeout=GRID_TIMEOUT)
        grid = await bot.repo.get_job(5)
        assert grid.status is JobStatus.DONE
        assert (grid.steps, grid.guidance, grid.width, grid.scheduler) == (1, 0.0, 1024, "euler")

        # FLUX.1 inpaints on its text-to-image weights (offered as an inpainting model, as an
        # SD text-to-image checkpoint is): guidance "none" and its own sampler.
        added = await models(
            stub, "add", prof, name="schnell-fill", source=str(tiny_families.flux), kind="inpaint"
        )
        assert "Family: FLUX.1 schnell." in await private(added, "Added")
        mask = box_mask((64, 64), (16, 16, 47, 47))
        handle = await stub.invoke_slash(
            "inpaint",
            {"prompt": "a fox", "model": "schnell-fill", "steps": 1},
            user=student,
            channel=CHANNEL,
            attachments={
                "image": attached("fox.png", encode(scene((64, 64)))),
                "mask": attached("mask.png", encode(mask)),
            },
        )
        repainted = await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        inpainted = await bot.repo.get_job(6)
        assert inpainted.kind is JobKind.INPAINT and inpainted.status is JobStatus.DONE
        assert (inpainted.guidance, inpainted.steps, inpainted.scheduler) == (0.0, 1, "euler")
        assert png_size(repainted.png_attachments[0].data) == (inpainted.width, inpainted.height)
