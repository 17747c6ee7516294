"""The words of /models list, /models log and /status, from plain values."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.features.admin._engine_ops import EngineFacts, LoadOutcome
from bot.features.admin._render import (
    audit_log,
    choice_label,
    engine_problem,
    fit,
    human_bytes,
    human_duration,
    load_report,
    model_list,
    status_page,
)
from bot.jobs.disk_usage import DiskUse, FolderUse
from bot.jobs.engine_client import EngineUnavailable
from bot.jobs.image_store import StorageFailure, StorageHealth
from bot.store.models import AuditEntry, JobStatus, Model
from engine.protocol import JobKind, JobSpec, LoadedModel, ModelRef

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MB = 1024 * 1024


def model(name, kind=JobKind.TEXT_TO_IMAGE, *, default=False, enabled=True, revision=None):
    return Model(
        name=name,
        source=f"/models/{name}",
        kind=kind,
        revision=revision,
        enabled=enabled,
        is_default=default,
    )


def loaded(name, size):
    return LoadedModel(ModelRef(name, f"/models/{name}"), JobKind.TEXT_TO_IMAGE, size)


@pytest.mark.parametrize(
    ("count", "text"),
    [(512, "512 B"), (4_400_000, "4.2 MB"), (2 * 1024**3, "2.0 GB"), (5 * 1024**4, "5120.0 GB")],
)
def test_human_bytes(count, text):
    assert human_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.42, "0.4 s"),
        (12.7, "12 s"),
        (185, "3 min 5 s"),
        (7500, "2 h 5 min"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_fit_drops_the_last_lines_and_says_how_many():
    lines = [f"line {n:03d} " + "x" * 90 for n in range(50)]
    text = fit(lines, limit=1000)
    assert len(text) <= 1000
    kept = text.splitlines()
    assert kept[0] == lines[0] and kept[-1] == f"… and {50 - len(kept) + 1} more lines"
    assert fit(["short"], limit=1000) == "short"


def test_model_list_for_students_hides_sources_and_for_admins_shows_them():
    models = [
        model("sd15", default=True),
        model("anime", revision="fp16"),
        model("old", enabled=False),
        model("inpaint", JobKind.INPAINT, default=True),
    ]
    memory = (loaded("sd15", 2 * 1024**3),)
    student = model_list([m for m in models if m.enabled], memory, admin=False)
    assert student.splitlines() == [
        "**Models**",
        "__Text-to-image__",
        "• **sd15** · default · loaded, 2.0 GB",
        "• **anime**",
        "__Inpainting__",
        "• **inpaint** · default",
        "__Depth-to-image__",
        "• none yet",
        "__Upscaler__",
        "• none yet",
        "Loaded now: sd15 (2.0 GB); 2.0 GB in all.",
    ]
    admin = model_list(models, None, admin=True)
    assert "• **anime** · `/models/anime` @ `fp16`" in admin
    assert "• **old** · disabled · `/models/old`" in admin
    assert admin.endswith("Loaded now: not known right now (the image engine is starting or down).")


def test_model_list_says_when_a_kind_has_no_model_and_nothing_is_loaded():
    text = model_list([model("sd15", default=True)], (), admin=False)
    assert "__Inpainting__\n• none yet" in text
    assert "Loaded now: none (a model loads when the first job needs it)." in text


def test_audit_log_lines_mark_outcomes_and_escape_names():
    entries = [
        AuditEntry(
            actor_id=1,
            actor_name="bad_*name*",
            action="models.load",
            target="sd",
            ok=False,
            outcome="refused: not an admin",
            at=NOW,
        ),
        AuditEntry(
            actor_id=2,
            actor_name="prof",
            action="models.add",
            target="sd",
            ok=True,
            outcome="added",
            at=NOW - timedelta(minutes=5),
        ),
        AuditEntry(
            actor_id=2,
            actor_name="prof",
            action="models.load",
            target="x",
            ok=False,
            outcome="failed: " + "y" * 300,
            at=NOW,
        ),
    ]
    lines = audit_log(entries).splitlines()
    assert lines[0] == "**Latest admin actions** (newest first, 3)"
    assert lines[1] == (
        f"⛔ <t:{int(NOW.timestamp())}:R> <@1> (bad\\_\\*name\\*) · **models.load** `sd` · "
        "refused: not an admin"
    )
    assert lines[2].startswith("✅ ") and lines[3].startswith("❌ ")
    assert lines[3].endswith("…") and len(lines[3]) < 300
    assert audit_log([]) == "The audit log is empty: no admin has done anything yet."


def test_status_page_shows_queue_batch_engine_memory_and_images():
    spec = JobSpec(
        job_id=7,
        kind=JobKind.TEXT_TO_IMAGE,
        model=ModelRef("sd15", "/m"),
        prompt="p",
        seeds=(1, 2),
        steps=20,
        width=512,
        height=768,
    )
    engine = EngineFacts(
        ready=True,
        pid=4242,
        device="cuda, float16",
        started_at=NOW - timedelta(hours=2, minutes=5),
        restarts=1,
        failure=None,
    )
    counts = dict.fromkeys(JobStatus, 0) | {JobStatus.QUEUED: 3, JobStatus.RUNNING: 1}
    page = status_page(
        counts=counts,
        waiting_in_memory=3,
        running=[
            spec,
            JobSpec(job_id=8, kind=JobKind.TEXT_TO_IMAGE, model=spec.model, prompt="q", seeds=(5,)),
        ],
        engine=engine,
        loaded=(loaded("sd15", 2 * 1024**3), loaded("anime", 512 * MB)),
        images_last_hour=14,
        disk=DiskUse(FolderUse(340, 3 * 1024**3 // 2), FolderUse(12, 25 * MB)),
        retention_days=30,
        now=NOW,
    )
    assert page.splitlines() == [
        "**Bot status**",
        "**Jobs:** queued 3 · running 1 · done 0 · failed 0 · cancelled 0 "
        "(all time; 3 waiting in the scheduler now)",
        "**Running batch:** 2 jobs (#7, #8), 3 images · sd15 · text-to-image · 512×768 · 20 steps",
        "**Engine:** ready, up 2 h 5 min "
        f"(since <t:{int(engine.started_at.timestamp())}:R>) · pid 4242 · cuda, float16 · "
        "1 restart",
        "**Loaded models:** sd15 (2.0 GB), anime (512.0 MB); 2.5 GB in all.",
        "**Images in the last hour:** 14",
        "**Image storage:** ok",
        "**Disk:** images 1.5 GB in 340 files · uploads 25.0 MB in 12 files · "
        "kept 30 days after last use (STORAGE_RETENTION_DAYS=30)",
    ]


def test_a_running_image_to_image_batch_is_named_on_the_status_page():
    spec = JobSpec(
        job_id=9,
        kind=JobKind.IMAGE_TO_IMAGE,
        model=ModelRef("sd15", "/m"),
        prompt="p",
        seeds=(1,),
        image_path="/in/ab.png",
        strength=0.35,
    )
    engine = EngineFacts(False, None, None, None, 0, None)
    page = status_page(engine=engine, **{**QUIET, "running": [spec]})  # type: ignore[arg-type]
    assert "**Running batch:** 1 job (#9), 1 image · sd15 · image-to-image · 512×512" in page


def test_status_page_lists_each_engine_replica():
    replicas = (
        "replica 0: pid 11 on cuda · 1 job(s) running · sd15",
        "replica 1: starting",
    )
    engine = EngineFacts(True, None, "cuda, float16", NOW, 1, None, replicas=replicas)
    page = status_page(engine=engine, **QUIET, now=NOW)
    assert (
        "**Replicas:** replica 0: pid 11 on cuda · 1 job(s) running · sd15; replica 1: starting"
    ) in page.splitlines()
    alone = status_page(engine=EngineFacts(True, 9, None, NOW, 0, None), **QUIET, now=NOW)
    assert "Replicas" not in alone


QUIET = dict(
    counts={},
    waiting_in_memory=0,
    running=[],
    loaded=None,
    images_last_hour=0,
    disk=DiskUse(FolderUse(0, 0), FolderUse(0, 0)),
    retention_days=30,
)


def test_status_page_says_when_files_are_kept_forever_or_the_disk_is_unreadable():
    engine = EngineFacts(False, None, None, None, 0, None)
    kept_forever = status_page(engine=engine, **{**QUIET, "retention_days": 0})
    assert (
        "**Disk:** images 0 B in 0 files · uploads 0 B in 0 files · "
        "kept forever (STORAGE_RETENTION_DAYS=0)"
    ) in kept_forever
    unreadable = status_page(engine=engine, **{**QUIET, "disk": None, "retention_days": 1})
    assert (
        "**Disk:** could not be measured (the image folders are unreadable; see the log) · "
        "kept 1 day after last use (STORAGE_RETENTION_DAYS=1)"
    ) in unreadable


def test_status_page_names_the_cause_of_a_failed_image_write():
    quiet = QUIET
    engine = EngineFacts(False, None, None, None, 0, None)
    at = NOW - timedelta(minutes=2)
    cause = "[Errno 28] No space left on device: /srv/bot/data/images/2025-03-01/job7_0.tmp"
    failure = StorageFailure(at, cause)
    failing = status_page(engine=engine, storage=StorageHealth(failure, failing=True), **quiet)
    when = f"<t:{int(at.timestamp())}:R>"
    assert f"**Image storage:** ⚠️ the last write failed {when}: `{cause}`" in failing
    healed = status_page(engine=engine, storage=StorageHealth(failure, failing=False), **quiet)
    assert f"**Image storage:** ok again (a write failed {when}: `{cause}`)" in healed


def test_status_page_for_an_engine_that_is_starting_or_down():
    quiet = dict(QUIET)
    starting = EngineFacts(False, None, None, None, 0, None)
    assert "**Engine:** starting · 0 restarts" in status_page(engine=starting, **quiet)
    down = EngineFacts(False, None, None, None, 5, "the image engine keeps failing; it is down")
    page = status_page(engine=down, **quiet)
    assert "**Engine:** down: the image engine keeps failing; it is down · 5 restarts" in page
    assert "**Running batch:** none" in page and "**Loaded models:** not known" in page


def test_status_page_for_an_engine_that_keeps_dying_says_when_it_is_tried_again():
    quiet = dict(QUIET)
    retry_at = datetime(2025, 1, 1, 12, 5, tzinfo=UTC)
    dying = EngineFacts(False, None, None, None, 6, None, retry_at, recent_deaths=6)
    page = status_page(engine=dying, **quiet)
    stamp = int(retry_at.timestamp())
    assert f"**Engine:** restarting <t:{stamp}:R> (6 deaths recently) · 6 restarts" in page


def test_load_reports_say_what_happened_and_what_to_check():
    hub = Model(name="anime", source="org/anime", kind=JobKind.TEXT_TO_IMAGE, revision="fp16")
    failed = LoadOutcome(False, "could not load the model anime", 1.25, 0, False, ())
    ok, audited, message = load_report(hub, failed)
    assert (ok, audited) == (False, "failed after 1.2 s: could not load the model anime")
    assert "The engine says: could not load the model anime." in message
    assert "Check that `org/anime` (revision `fp16`) exists on Hugging Face" in message
    folder = model("sd15")
    _, _, message = load_report(folder, failed)
    assert "Check that `/models/sd15` still holds a complete diffusers pipeline." in message
    done = LoadOutcome(True, "sd15 is loaded", 12.5, 3 * MB, False, (loaded("sd15", 3 * MB),))
    assert load_report(folder, done) == (
        True,
        "loaded in 12 s, 3.0 MB",
        "✅ Loaded **sd15** in 12 s; it takes 3.0 MB.\nLoaded now: sd15 (3.0 MB); 3.0 MB in all.",
    )
    again = LoadOutcome(True, "sd15 is loaded", 0.01, 3 * MB, True, ())
    assert load_report(folder, again)[1] == "already loaded (3.0 MB)"


def test_engine_problems_and_choice_labels():
    down = engine_problem("sd", EngineUnavailable("the image engine is not running"))
    assert down == "Could not load sd: the image engine is not running."
    assert "did not finish loading in time" in engine_problem("sd", TimeoutError())
    assert choice_label(model("sd15", default=True)) == "sd15 (text-to-image, default)"
    assert (
        choice_label(model("old", JobKind.INPAINT, enabled=False)) == "old (inpainting, disabled)"
    )
