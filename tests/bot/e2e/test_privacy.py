"""What one student can get of another's job, tried as a curious student would (issue 12).

The rule: a recipe follows /reroll's channel rule; another student's uploads never leave with
it (the owner and admins get them, privately); a flagged job's recipe is its owner's alone; a
model folder's path on the bot's server is shown to admins only.
"""

from __future__ import annotations

from tests.bot.e2e.harness import ADMIN_ROLE, CHANNEL
from tests.bot.e2e.test_imagine import RESULT_TIMEOUT, ephemeral_text, has_png, imagine
from tests.bot.e2e.test_reroll import THREAD
from tests.bot.pictures import box_mask, encode, scene

PRIVATE = 64  # Discord's ephemeral message flag


async def inpaint(stub, user):
    files = {
        "image": ("me.png", encode(scene((64, 64))), "image/png"),
        "mask": ("mask.png", encode(box_mask((64, 64), (16, 16, 47, 47))), "image/png"),
    }
    handle = await stub.invoke_slash(
        "inpaint",
        {"prompt": "a red kite", "seed": 3, "steps": 1},
        user=user,
        channel=CHANNEL,
        attachments=files,
    )
    return await handle.wait_for_message(has_png, timeout=RESULT_TIMEOUT)


async def recipe_reply(stub, user, job_id, channel=CHANNEL):
    asked = await stub.invoke_slash("recipe", {"job": job_id}, user=user, channel=channel)
    return await asked.wait_for_message(lambda m: bool(m.attachments))


async def test_another_students_recipe_never_carries_their_uploads_or_paths(harness):
    async with harness.bot():
        stub = harness.stub
        owner, curious = stub.add_user("ola"), stub.add_user("cy")
        admin = stub.add_user("prof", roles=[ADMIN_ROLE])
        await inpaint(stub, owner)
        server_folder = str(harness.tiny.inpainting)

        theirs = await recipe_reply(stub, curious, 1)
        assert [a.filename for a in theirs.attachments] == ["recipe_job1.py"]
        assert "stay with them" in theirs.content
        assert not theirs.flags & PRIVATE  # nothing private in it: the script alone
        script = theirs.attachments[0].data.decode()
        assert server_folder not in script
        assert "MODEL = 'tiny-sd-inpainting'" in script or 'MODEL = "tiny-sd-inpainting"' in script

        # The owner and admins get the uploads, privately; only the admin sees the folder.
        own = await recipe_reply(stub, owner, 1)
        assert own.flags & PRIVATE
        assert [a.filename for a in own.attachments][1:] == ["job1_image.png", "job1_mask.png"]
        assert server_folder not in own.attachments[0].data.decode()
        admins = await recipe_reply(stub, admin, 1)
        assert admins.flags & PRIVATE
        assert len(admins.attachments) == 3
        assert server_folder in admins.attachments[0].data.decode()


async def test_recipes_follow_the_reroll_channel_rule(harness):
    async with harness.bot():
        stub = harness.stub
        owner, curious = stub.add_user("ola"), stub.add_user("cy")
        made = await imagine(stub, owner, channel=THREAD)
        await made.wait_for_message(has_png, timeout=RESULT_TIMEOUT)

        refused = await stub.invoke_slash("recipe", {"job": 1}, user=curious, channel=CHANNEL)
        assert await ephemeral_text(refused) == (
            "Job #1 was not made in this channel. You can have the recipes of your own jobs "
            "and the jobs made here."
        )
        # Where it was made, anyone may have it; its owner may have it anywhere allowed.
        there = await recipe_reply(stub, curious, 1, channel=THREAD)
        assert [a.filename for a in there.attachments] == ["recipe_job1.py"]
        mine = await recipe_reply(stub, owner, 1)
        assert [a.filename for a in mine.attachments] == ["recipe_job1.py"]


async def test_a_flagged_jobs_recipe_is_its_owners_alone(harness):
    harness.flag_everything = True
    async with harness.bot():
        stub = harness.stub
        owner, curious = stub.add_user("ola"), stub.add_user("cy")
        await inpaint(stub, owner)

        refused = await stub.invoke_slash("recipe", {"job": 1}, user=curious, channel=CHANNEL)
        assert "only the student who made it can have its recipe" in await ephemeral_text(refused)
        own = await recipe_reply(stub, owner, 1)
        assert own.flags & PRIVATE
        assert len(own.attachments) == 3


async def test_details_show_a_model_folder_to_admins_only(harness):
    async with harness.bot():
        stub = harness.stub
        owner = stub.add_user("ola")
        admin = stub.add_user("prof", roles=[ADMIN_ROLE])
        made = await imagine(stub, owner)
        result = await made.wait_for_message(has_png, timeout=RESULT_TIMEOUT)
        folder = str(harness.tiny.text_to_image)

        seen = await ephemeral_text(await stub.click(result, "job:details:1", user=owner))
        assert "**Model:** tiny-sd (kept on the bot's server)" in seen
        assert folder not in seen
        seen = await ephemeral_text(await stub.click(result, "job:details:1", user=admin))
        assert folder in seen
