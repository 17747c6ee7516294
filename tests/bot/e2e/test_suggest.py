"""/models-suggest through the Discord stub: checks, the admins' card, Approve and Reject."""

from __future__ import annotations

import shutil

from tests.bot.e2e.harness import CHANNEL, eventually
from tests.bot.e2e.test_admin import ADMIN_ROLE
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine
from tests.fixtures.pickled import pickled_copy

ADMINS = "general"  # the stub's second channel stands in for the admins' own


async def test_students_suggest_admins_approve_or_reject_and_bad_sources_are_refused(
    harness, tmp_path
):
    harness.settings.models.suggestions_channel = ADMINS
    harness.settings.models.suggestions_folder = str(tmp_path)
    model = harness.tiny.text_to_image
    fox = shutil.copytree(model, tmp_path / "dreambooth-fox")
    (fox / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A fox\n", encoding="utf-8")
    owl = shutil.copytree(model, tmp_path / "owl")
    coded = shutil.copytree(model, tmp_path / "coded")
    (coded / "pipeline.py").write_text("print('hi')\n", encoding="utf-8")
    pickled = pickled_copy(model, tmp_path / "pickled")
    async with harness.bot() as bot:
        stub = harness.stub
        prof, student = stub.add_user("prof", roles=[ADMIN_ROLE]), stub.add_user("ada")

        async def suggest(source, **options):
            return await stub.invoke_slash(
                "models-suggest", {"source": str(source), **options}, user=student, channel=CHANNEL
            )

        for source, refusal in (
            (pickled, "It holds pickled weights (`text_encoder/pytorch_model.bin`)"),
            (coded, "It ships its own code (`pipeline.py`)"),
            (tmp_path / "nowhere", f"or a folder under {tmp_path}"),
            (model, f"or a folder under {tmp_path}"),  # a real pipeline, elsewhere
        ):
            said = await ephemeral_text(await suggest(source, name="candidate"))
            assert refusal in said, source

        thanks = await ephemeral_text(await suggest(fox))
        assert "Suggestion #1 (**dreambooth-fox**) passed the checks" in thanks
        card = await stub.wait_for_channel_message(ADMINS, lambda m: "Suggestion #1" in m.content)
        assert "licence: apache-2.0" in card.content and "text-to-image" in card.content
        assert {"suggest:approve:1", "suggest:reject:1"} == set(card.custom_ids)
        # Nothing reached the course channel: the source is for the admins' eyes.
        assert not stub.channel_messages(CHANNEL)

        refused = await stub.click(card, "suggest:approve:1", user=student)
        assert "Only admins can do that" in await ephemeral_text(refused)
        await stub.click(card, "suggest:approve:1", user=prof)
        told = await stub.wait_for_channel_message(CHANNEL, lambda m: "approved" in m.content)
        assert f"<@{student.id}> your suggested model **dreambooth-fox** was approved" in (
            told.content
        )
        offered = await bot.repo.get_model("dreambooth-fox")
        assert offered is not None and offered.enabled and offered.suggested_by == student.id
        closed = stub.channel_messages(ADMINS)[-1]
        assert "✅ Approved by" in closed.content and not closed.custom_ids

        await ephemeral_text(await suggest(owl))
        second = await stub.wait_for_channel_message(
            ADMINS, lambda m: "Suggestion #2" in m.content and bool(m.custom_ids)
        )
        await stub.click(second, "suggest:reject:2", user=prof)
        no = await stub.wait_for_channel_message(CHANNEL, lambda m: "not taken" in m.content)
        assert "**owl**" in no.content and await bot.repo.get_model("owl") is None

        async def audited() -> bool:
            log = {(e.action, e.ok) for e in await bot.repo.latest_audit(10)}
            return {
                ("models.suggestion.approve", True),
                ("models.suggestion.approve", False),  # the student's press, refused
                ("models.suggestion.reject", True),
            } <= log

        # Written as the press ends, just after the student is told.
        await eventually(audited, timeout=10)

        # The approved model makes images like any other.
        made = await imagine(stub, student, model="dreambooth-fox", seed=1)
        await made.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        assert (await bot.repo.get_job(1)).model_name == "dreambooth-fox"
