"""An operator's narrower bounds reach Discord's command payload and the bot's refusals."""

from __future__ import annotations

from tests.bot.e2e.harness import CHANNEL, Harness, make_settings
from tests.bot.e2e.test_imagine import ephemeral_text


async def test_narrowed_limits_show_in_the_synced_commands_and_refuse_before_writing(
    tmp_path, tiny_models, harness
):
    stub = harness.stub
    settings = make_settings(tmp_path, stub, tiny_models, max_steps=50, max_count=2)
    narrowed = Harness(tmp_path, stub, tiny_models, settings, engine_command=harness.engine_command)
    async with narrowed.bot() as bot:
        commands = {c["name"]: c for c in stub.synced_commands(guild=stub.guild)}
        imagine = {o["name"]: o for o in commands["imagine"]["options"]}
        inpaint = {o["name"]: o for o in commands["inpaint"]["options"]}
        assert (imagine["steps"]["min_value"], imagine["steps"]["max_value"]) == (1, 50)
        assert inpaint["steps"]["max_value"] == 50 and imagine["count"]["max_value"] == 2
        assert imagine["steps"]["description"].startswith("Denoising steps, 1-50 (default 30;")
        zh = imagine["steps"]["description_localizations"]["zh-CN"]
        assert zh.startswith("去噪步数，1-50（默认 30）")
        assert imagine["prompt"]["max_length"] == 1000 and imagine["guidance"]["max_value"] == 30

        student = stub.add_user("noor")
        for options, expected in [
            ({"steps": 60}, "steps must be between 1 and 50 (you gave 60)."),
            ({"count": 3}, "count must be between 1 and 2 (you gave 3)."),
        ]:
            handle = await stub.invoke_slash(
                "imagine", {"prompt": "x", **options}, user=student, channel=CHANNEL, validate=False
            )
            assert await ephemeral_text(handle) == expected
        assert await bot.repo.count_jobs(student.id) == 0  # nothing written, nothing counted
