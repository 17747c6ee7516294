"""The narrow handle every feature gets: the services it may use, never the whole bot.

``bot.app`` builds one ``Services`` and passes it to each feature's ``setup()``. A feature that
needs something new adds it here, so what features depend on stays visible in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.jobs.disk_usage import DiskUsage
from bot.jobs.image_store import StorageHealth
from bot.jobs.inputs import InputStore
from bot.jobs.reviews import ReviewQueue
from bot.jobs.scheduler import EngineLike
from bot.jobs.service import JobService
from bot.jobs.strikes import Strikes
from bot.settings import Settings
from bot.store.repository import Repository
from bot.ui.buttons import ButtonActions
from engine.protocol import JobSpec


class QueueStatus(Protocol):
    """What /status reads of the scheduler: nothing it could change."""

    @property
    def running(self) -> Sequence[JobSpec]: ...

    @property
    def queue_length(self) -> int: ...


class StorageStatus(Protocol):
    """What /status reads of the image folder (an ``ImageStore``): nothing it could change."""

    @property
    def health(self) -> StorageHealth: ...


@dataclass(frozen=True)
class Services:
    """What features may use."""

    settings: Settings
    repo: Repository
    jobs: JobService
    inputs: InputStore
    engine: EngineLike
    queue: QueueStatus
    storage: StorageStatus
    buttons: ButtonActions
    disk: DiskUsage  # what the image and upload folders take, for /status
    reviews: ReviewQueue  # the moderators' cards for flagged images, and their decisions
    strikes: Strikes  # pauses users with enough strikes


class HasServices(Protocol):
    """A client that carries the services: how persistent buttons, which discord.py builds
    from a custom id alone, reach them (``interaction.client.services``)."""

    services: Services
