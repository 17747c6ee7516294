"""LoRAs through the Discord stub with the real engine: an admin adds one, a student applies it
with <lora:name:w> and with the loras option, rerolls keep it, mistakes are refused."""

from __future__ import annotations

import numpy as np

from tests.bot.e2e.harness import CHANNEL, png_parameters
from tests.bot.e2e.test_admin import ADMIN_ROLE, models, private
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine
from tests.bot.e2e.test_inpaint import pixels_of
from tests.fixtures.tiny_adapters import EMBEDDING_TOKEN


async def test_admin_adds_a_lora_students_apply_it_and_mistakes_are_refused(
    harness, tiny_adapters, family_adapters
):
    async with harness.bot() as bot:
        stub = harness.stub
        prof, student = stub.add_user("prof", roles=[ADMIN_ROLE]), stub.add_user("ada")
        added = await models(
            stub, "add", prof, name="ink", source=str(tiny_adapters.lora), kind="lora"
        )
        assert "Prompts use it as `<lora:ink:0.8>`" in await private(added, "Added")
        # One made for another family: added for it, refused on an SD 1.x model.
        xl_lora = str(family_adapters.sdxl_lora)
        added = await models(
            stub, "add", prof, name="xl-ink", source=xl_lora, kind="lora", family="sdxl"
        )
        assert "Added the LoRA **xl-ink** (SDXL)" in await private(added, "Added")

        plain = await imagine(stub, student, "a fox", seed=3, steps=2)
        plain_png = (await plain.wait_for_message(has_png, timeout=RESULT_TIMEOUT)).png_attachments
        styled = await imagine(stub, student, "a fox <lora:ink:0.8>", seed=3, steps=2)
        result = await styled.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        (made,) = result.png_attachments
        assert not np.array_equal(pixels_of(made.data), pixels_of(plain_png[0].data))
        assert png_parameters(made.data).startswith("a fox <lora:ink:0.8>\n")
        details = await stub.click(result, "job:details:2", user=student)
        assert "**LoRAs and embeddings:** ink (LoRA, 0.8)" in await ephemeral_text(details)

        # The option writes the same token into the prompt: the same pixels.
        option = await imagine(stub, student, "a fox", seed=3, steps=2, loras="ink:0.8")
        same = await option.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert (await bot.repo.get_job(3)).prompt == "a fox <lora:ink:0.8>"
        np.testing.assert_array_equal(pixels_of(same.png_attachments[0].data), pixels_of(made.data))
        # A reroll keeps it.
        again = await stub.invoke_slash("reroll", {"seed": 3}, user=student, channel=CHANNEL)
        rerolled = await again.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        np.testing.assert_array_equal(
            pixels_of(rerolled.png_attachments[0].data), pixels_of(made.data)
        )

        listing = await stub.invoke_slash("models-list", user=student, channel=CHANNEL)
        listed = await private(listing, "**Models**")
        assert "**ink** · LoRA · Stable Diffusion 1.x/2.x · `<lora:ink:1>`" in listed
        assert "**xl-ink** · LoRA · SDXL · `<lora:xl-ink:1>`" in listed

        # An embedding: added with its token, used by writing it.
        embedding = await models(
            stub,
            "add",
            prof,
            name="tiny-style",
            source=str(tiny_adapters.embedding),
            kind="embedding",
        )
        assert f"Prompts use it as `{EMBEDDING_TOKEN}`" in await private(embedding, "Added")
        xl_embedding = str(family_adapters.sdxl_embedding)
        options = {"source": xl_embedding, "kind": "embedding", "token": "<xl-style>"}
        added = await models(stub, "add", prof, name="xl-style", family="sdxl", **options)
        assert "(SDXL)" in await private(added, "Added")
        # FLUX.1's T5 encoder reads no embeddings: refused before anything is stored.
        refused = await models(stub, "add", prof, name="flux-style", family="flux", **options)
        assert "FLUX.1 schnell models take no embeddings" in await ephemeral_text(refused)
        assert await bot.repo.get_adapter("flux-style") is None
        worded = await imagine(stub, student, f"a {EMBEDDING_TOKEN} fox", seed=3, steps=2)
        in_words = await worded.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert not np.array_equal(
            pixels_of(in_words.png_attachments[0].data), pixels_of(plain_png[0].data)
        )
        shown = await stub.click(in_words, "job:details:5", user=student)
        assert f"{EMBEDDING_TOKEN} (embedding tiny-style)" in await ephemeral_text(shown)

        refusals = [
            (
                {"prompt": "a fox <lora:nope:1>"},
                "There is no LoRA called “nope”. LoRAs you can use: ink.",
            ),
            ({"prompt": "a fox <lora:ink:3>"}, "gives the LoRA “ink” the weight “3”"),
            ({"prompt": "a fox", "loras": "ink:9"}, "The loras option reads “ink:9” as no LoRA"),
            (
                {"prompt": "a fox <lora:xl-ink:1>"},
                "“xl-ink” is made for SDXL models; tiny-sd is a Stable Diffusion 1.x/2.x model.",
            ),
            ({"prompt": "a <xl-style> fox"}, "The embedding <xl-style> is made for SDXL models"),
        ]
        for options, expected in refusals:
            handle = await stub.invoke_slash(
                "imagine", {**options, "steps": 1}, user=student, channel=CHANNEL, validate=False
            )
            assert expected in await ephemeral_text(handle), options
        assert await bot.repo.count_jobs(student.id) == 5

        # Disabled: it leaves the engine, and a reroll of a job that used it is refused.
        disabled = await models(stub, "disable", prof, name="ink")
        assert "taken out of the engine" in await private(disabled, "disabled")
        refused = await stub.invoke_slash("reroll", {"job": "2"}, user=student, channel=CHANNEL)
        assert "used the LoRA “ink”, which is no longer offered" in await ephemeral_text(refused)
