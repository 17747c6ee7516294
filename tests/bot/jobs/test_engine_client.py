"""The engine client against a real engine process on the tiny models, and against fakes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from bot.jobs.engine_client import (
    MAX_LOG_LINE_BYTES,
    STOPPED_MESSAGE,
    EngineClient,
    EngineUnavailable,
)
from engine.images.metadata import read_parameters
from engine.protocol import (
    Accepted,
    ErrorKind,
    Event,
    JobError,
    JobKind,
    JobSpec,
    ModelRef,
    Progress,
    Ready,
    Result,
    SpooledFile,
)
from tests.fixtures.tiny_models import TinyModels

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(180)


def engine_env(tiny_models: TinyModels) -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "ENGINE_DEVICE": "cpu",
        "ENGINE_OFFLINE": "true",
        "ENGINE_SAFETY_CHECKER": str(tiny_models.safety_checker_never),
        "ENGINE_SAFETY_ENABLED": "true",
        "ENGINE_PROGRESS_INTERVAL_S": "0",
        "ENGINE_PREVIEW_INTERVAL_S": "0",
    }


def job(model: ModelRef, job_id: int, **fields: Any) -> JobSpec:
    values: dict[str, Any] = {
        "job_id": job_id,
        "kind": JobKind.TEXT_TO_IMAGE,
        "model": model,
        "prompt": "a cat",
        "seeds": (job_id,),
        "steps": 2,
        "width": 64,
        "height": 64,
    }
    values.update(fields)
    return JobSpec(**values)


async def next_event(client: EngineClient, wait_s: float = 60) -> Event:
    return await asyncio.wait_for(client.events.get(), wait_s)


async def until(client: EngineClient, done: Any, wait_s: float = 60) -> list[Event]:
    """Events until ``done(event)`` holds, that event included."""
    seen: list[Event] = []
    while True:
        event = await next_event(client, wait_s)
        seen.append(event)
        if done(event):
            return seen


def finished(*job_ids: int) -> Any:
    left = set(job_ids)

    def check(event: Event) -> bool:
        if isinstance(event, Result | JobError):
            left.discard(event.job_id)
        return not left

    return check


async def test_jobs_models_and_cancel(tiny_models: TinyModels) -> None:
    model = ModelRef(name="tiny-sd", source=str(tiny_models.text_to_image))
    client = EngineClient(env=engine_env(tiny_models), start_timeout=120)
    ready = await client.start()
    try:
        assert isinstance(await next_event(client), Ready)
        assert ready.device == "cpu" and ready.dtype == "float32"
        assert client.pid == ready.pid and client.started_at is not None
        assert client.restarts == 0

        reply = await client.load_model(model, JobKind.TEXT_TO_IMAGE)
        assert reply.ok and reply.message == "tiny-sd is loaded"
        assert [m.model for m in (await client.list_models()).loaded] == [model]

        await client.run_batch([job(model, 1), job(model, 2, seeds=(5, 6))])
        events = await until(client, finished(1, 2))
        results = {e.job_id: e for e in events if isinstance(e, Result)}
        assert sorted(results) == [1, 2]
        assert [image.seed for image in results[2].images] == [5, 6]
        assert all(image.png.startswith(b"\x89PNG") for image in results[2].images)
        assert any(isinstance(e, Accepted) for e in events)
        assert any(isinstance(e, Progress) and e.preview_png for e in events)
        assert client.in_flight == frozenset()

        await client.run_batch([job(model, 3, steps=100)])
        await until(client, lambda e: isinstance(e, Progress) and e.job_id == 3)
        await client.cancel(3)
        events = await until(client, finished(3))
        assert events[-1] == JobError(job_id=3, kind=ErrorKind.CANCELLED, message="cancelled")

        assert (await client.unload_model(model)).ok
    finally:
        await client.stop()
    assert client.pid is None


async def test_with_a_spool_the_pictures_come_as_files_not_through_the_pipe(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    model = ModelRef(name="tiny-sd", source=str(tiny_models.text_to_image))
    spool = tmp_path / "spool"
    spool.mkdir()
    client = EngineClient(env=engine_env(tiny_models), start_timeout=120, spool=spool)
    await client.start()
    try:
        await client.run_batch([job(model, 1, seeds=(5, 6))])
        events = await until(client, finished(1))
    finally:
        await client.stop()
    (result,) = [e for e in events if isinstance(e, Result)]
    names = []
    for image in result.images:
        assert isinstance(image.png, SpooledFile)
        data = (spool / image.png.name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) == image.png.size
        assert read_parameters(data) is not None  # the same PNG the frame would have carried
        names.append(image.png.name)
    assert sorted(os.listdir(spool)) == sorted(names)


async def test_killed_engine_is_restarted_and_its_job_reported(tiny_models: TinyModels) -> None:
    model = ModelRef(name="tiny-sd", source=str(tiny_models.text_to_image))
    client = EngineClient(env=engine_env(tiny_models), start_timeout=120, backoff_s=0.1)
    first = await client.start()
    try:
        await client.run_batch([job(model, 1, steps=100)])
        await until(client, lambda e: isinstance(e, Progress) and e.job_id == 1)
        os.kill(first.pid, signal.SIGKILL)
        crashed = await until(client, lambda e: isinstance(e, JobError))
        assert crashed[-1] == JobError(
            job_id=1,
            kind=ErrorKind.ENGINE_CRASHED,
            message="the image engine stopped while working on this; it is being restarted",
        )
        assert not any(isinstance(e, Result) for e in crashed)

        second = await until(client, lambda e: isinstance(e, Ready), wait_s=120)
        assert second[-1].pid != first.pid
        assert client.restarts == 1 and client.pid == second[-1].pid
        await client.run_batch([job(model, 2)])
        events = await until(client, finished(2))
        assert isinstance(events[-1], Result)
    finally:
        await client.stop()


# --- fakes: tiny scripts that speak the protocol without torch, to test the client's logic --

FAKE = """
import json, os, struct, sys, time
from engine.protocol import MAX_FRAME_BYTES, Accepted, Ready, read_message, write_message
out = sys.stdout.buffer
mode = sys.argv[1]
if mode == "exit-at-once":
    sys.exit(3)
if mode == "killed-once-while-starting" and not os.path.exists(sys.argv[2]):
    open(sys.argv[2], "w").close()
    os.kill(os.getpid(), 9)  # as the OOM killer would, before Ready
if mode == "killed-while-starting-times":  # argv: a counter file, how many times
    deaths = int(open(sys.argv[2]).read()) if os.path.exists(sys.argv[2]) else 0
    if deaths < int(sys.argv[3]):
        open(sys.argv[2], "w").write(str(deaths + 1))
        os.kill(os.getpid(), 9)
if mode == "dump-env":
    with open(sys.argv[2], "w") as dump:
        json.dump(dict(os.environ), dump)
print("hello from the fake engine", file=sys.stderr, flush=True)
if mode == "endless-stderr-line":  # 32 MiB without a newline, as a runaway print would
    for _ in range(512):
        sys.stderr.buffer.write(b"x" * 65536)
    sys.stderr.buffer.write(b"\\nthe line after\\n")
    sys.stderr.flush()
write_message(out, Ready(device="cpu", dtype="float32", pid=os.getpid()))
if mode == "die-after-ready":
    sys.exit(4)
if mode == "ignore-shutdown":
    time.sleep(600)
while (message := read_message(sys.stdin.buffer)) is not None:
    if message.type == "shutdown":
        break
    if mode == "oversized-frame-once" and not os.path.exists(sys.argv[2]):
        open(sys.argv[2], "w").close()
        # A length prefix past the protocol's bound, and a body that would never end.
        out.write(struct.pack(">I", MAX_FRAME_BYTES + 1) + b"{" * 65536)
        out.flush()
        time.sleep(600)
    if message.type == "run_batch":  # says which jobs reached it
        for spec in message.jobs:
            write_message(out, Accepted(job_id=spec.job_id))
"""


def fake(mode: str, *args: str) -> list[str]:
    return [sys.executable, "-c", FAKE, mode, *args]


async def test_an_engine_that_never_starts() -> None:
    client = EngineClient(command=fake("exit-at-once"), start_timeout=30)
    with pytest.raises(EngineUnavailable, match="could not be started"):
        await client.start()
    with pytest.raises(EngineUnavailable):
        await client.run_batch([])
    await client.stop()


async def test_an_engine_killed_while_starting_is_restarted(tmp_path) -> None:
    marker = tmp_path / "killed-once"
    client = EngineClient(
        command=fake("killed-once-while-starting", str(marker)), backoff_s=0.01, start_timeout=30
    )
    try:
        ready = await client.start()
        assert marker.exists() and client.restarts == 1 and ready.pid == client.pid
    finally:
        await client.stop()


async def test_after_repeated_deaths_the_engine_is_tried_again_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``max_restarts`` deaths the client pauses longer and keeps trying, rather than
    giving up for good (which failed every queued job at once); a batch waits for it."""
    caplog.set_level(logging.INFO)
    deaths = tmp_path / "deaths"
    client = EngineClient(
        command=fake("killed-while-starting-times", str(deaths), "5"),
        max_restarts=2,
        backoff_s=0.01,
        retry_every_s=0.5,
    )
    starting = asyncio.create_task(client.start())
    try:
        for _ in range(100):  # the third death starts the long pauses
            if client.retry_at is not None and client.recent_deaths > 2:
                break
            await asyncio.sleep(0.02)
        assert client.failed is None and client.retry_at is not None
        with pytest.raises(EngineUnavailable, match=r"tried again every 0\.5s"):
            await client.list_models()  # an admin's request is answered at once, not held
        model = ModelRef(name="m", source="org/m")
        await client.run_batch([job(model, 1)])  # kept until the engine is up, then sent
        assert (await until(client, lambda e: isinstance(e, Accepted)))[-1] == Accepted(1)
        assert client.ready and client.restarts == 5 and client.retry_at is None
        assert deaths.read_text() == "5" and (await starting).pid == client.pid
        assert "the engine died 3 times in 600s; trying again in 0.5s" in caplog.text
    finally:
        await client.stop()
    assert "hello from the fake engine" in caplog.text  # stderr reaches the log


async def test_a_batch_given_during_a_restart_waits_and_can_be_cancelled_meanwhile(
    tmp_path: Path,
) -> None:
    """``run_batch`` never waits for a restarting engine (the scheduler calls it holding its
    lock, which a Cancel button needs within Discord's 3 s); the batch waits in the client,
    and a job cancelled meanwhile ends at once and never reaches the engine."""
    deaths = tmp_path / "deaths"
    client = EngineClient(
        command=fake("killed-while-starting-times", str(deaths), "1"), backoff_s=2.0
    )
    starting = asyncio.create_task(client.start())
    try:
        for _ in range(200):
            if client.retry_at is not None:
                break
            await asyncio.sleep(0.02)
        assert client.retry_at is not None and not client.ready  # in the pause
        model = ModelRef(name="m", source="org/m")
        await client.run_batch([job(model, 1), job(model, 2)])
        await client.run_batch([job(model, 3)])
        assert client.in_flight == {1, 2, 3}
        await client.cancel(2)
        assert client.events.get_nowait() == JobError(2, ErrorKind.CANCELLED, "cancelled")
        assert client.in_flight == {1, 3}
        events = await until(client, lambda e: e == Accepted(3), wait_s=30)
        assert [e for e in events if isinstance(e, Accepted)] == [Accepted(1), Accepted(3)]
        await starting
    finally:
        await client.stop()


async def test_jobs_waiting_for_the_engine_end_when_it_stops() -> None:
    client = EngineClient(command=fake("exit-at-once"))
    model = ModelRef(name="m", source="org/m")
    await client.run_batch([job(model, 1)])  # never started: it waits
    await client.stop()
    assert client.events.get_nowait() == JobError(1, ErrorKind.ENGINE_CRASHED, STOPPED_MESSAGE)
    assert client.in_flight == frozenset()


async def test_a_frame_over_the_bound_restarts_the_engine(tmp_path: Path) -> None:
    marker = tmp_path / "sent-once"
    client = EngineClient(command=fake("oversized-frame-once", str(marker)), backoff_s=0.01)
    first = await client.start()
    try:
        assert isinstance(await next_event(client), Ready)
        model = ModelRef(name="m", source="org/m")
        await client.run_batch([job(model, 1)])
        # Refused from its length prefix alone: the engine is killed like any protocol fault,
        # its job reported, and a new engine started.
        events = await until(client, lambda e: isinstance(e, Ready), wait_s=30)
        assert events[0] == JobError(
            job_id=1,
            kind=ErrorKind.ENGINE_CRASHED,
            message="the image engine stopped while working on this; it is being restarted",
        )
        assert marker.exists() and client.restarts == 1 and client.pid != first.pid
        with pytest.raises(ProcessLookupError):
            os.kill(first.pid, 0)
    finally:
        await client.stop()


async def test_an_endless_stderr_line_is_cut_not_buffered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.jobs.engine_client.engine")
    tracemalloc.start()
    try:
        client = EngineClient(command=fake("endless-stderr-line"))
        await client.start()
        await client.stop()  # every line the engine wrote is logged by then
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # the line is 32 MiB
    logged = [r.getMessage() for r in caplog.records if r.name.endswith(".engine")]
    cut = MAX_LOG_LINE_BYTES
    assert "x" * cut + f" … ({32 * 1024 * 1024 - cut} more bytes)" in logged
    assert "the line after" in logged


async def test_stop_kills_an_engine_that_does_not_stop() -> None:
    client = EngineClient(command=fake("ignore-shutdown"), stop_timeout=0.5)
    ready = await client.start()
    await client.stop()
    assert client.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(ready.pid, 0)


async def test_graceful_stop() -> None:
    client = EngineClient(command=fake("serve"))
    await client.start()
    await client.stop()
    assert client.pid is None and client.failed is None


async def test_the_engine_is_not_given_the_bots_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token and the rest of the bot's settings stay with the bot; the engine's pass."""
    bots = {
        "DISCORD_TOKEN": "the-bot-token",
        "discord_token": "any case the bot reads",
        "DATABASE_URL": "postgresql+asyncpg://bot:password@db/bot",
        "STORAGE_OUTPUT_DIR": "/srv/images",
        "LIMITS_IMAGES_PER_HOUR": "40",
        "SCHEDULER_STALL_TIMEOUT_S": "60",
        "COURSE_SCHEDULERS": "ddim,euler",
        "MODELS_DEFAULT_INPAINTING": "x/y",
    }
    engines = {
        "ENGINE_DEVICE": "cpu",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_TOKEN": "hub-token",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    for name, value in {**bots, **engines}.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "env.json"
    client = EngineClient(command=fake("dump-env", str(dump)), env={"ENGINE_OFFLINE": "true"})
    await client.start()
    await client.stop()
    seen = json.loads(dump.read_text())
    assert set(bots) & set(seen) == set()
    assert "the-bot-token" not in json.dumps(seen)
    assert {name: seen.get(name) for name in engines} == engines
    assert seen["ENGINE_OFFLINE"] == "true" and seen["PATH"] == os.environ["PATH"]


def test_the_client_does_not_import_torch() -> None:
    code = (
        "import sys, bot.jobs.engine_client; "
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
