"""Uploaded pictures are decoded in worker processes, each decode bounded in CPU time, and only a
few at once.

Decoding is the one step whose cost the user chooses: a 404 KB progressive JPEG that repeats one
scan thousands of times passes every header check and then takes a minute of CPU. Run in the
bot's threads, six of them held the thread pool that saves other users' results. Here a decode
runs in a separate process (never forked from the bot: its event loop and sockets stay out),
whose CPU time is capped per decode with ``RLIMIT_CPU``: past it the kernel ends the worker,
the upload is refused with a message saying what to do, and a fresh worker takes its place.
A few workers at most, so uploads cannot take every core either; when all are busy, a request
waits a little, then is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import multiprocessing
import resource
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from bot.jobs import inputs
from bot.ui.errors import UserFacingError, UserInputError

log = logging.getLogger(__name__)

TOO_SLOW = (
    "The picture took too long to read; it may be damaged or unusually encoded. "
    "Try saving it again as PNG or baseline JPEG."
)
TOO_MANY = "Too many pictures are being read right now; please try again in a minute."
WORKERS = 2
WAIT_S = 10.0  # how long a request waits for a free worker before it is refused


@dataclass(frozen=True)
class DecodedUploads:
    """An /inpaint or image-to-image request's pictures, checked and fitted: the job's size, and
    the files to store (the image, then the mask if one was given), named by content."""

    size: tuple[int, int]
    files: list[tuple[str, bytes]]


def decode_uploads(
    image_data: bytes, mask_data: bytes | None, mask_prompt: str | None, whole: bool = False
) -> DecodedUploads:
    """Check, fit and encode the pictures (blocking; ``UserInputError`` when refused).

    ``whole``: an image-to-image picture, which needs no mask (the whole of it changes).
    """
    fitted = (
        inputs.prepare_start_picture(image_data)
        if whole
        else inputs.prepare_inputs(image_data, mask_data, mask_prompt)
    )
    files = [inputs.named_png(fitted.image)]
    if fitted.mask is not None:
        files.append(inputs.named_png(fitted.mask))
    return DecodedUploads(fitted.size, files)


def _start_worker() -> None:
    # A worker ended for its CPU time must not leave a core file, and Ctrl-C is the bot's to
    # handle: the pool is shut down with it.
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_within(
    cpu_limit_s: float,
    image_data: bytes,
    mask_data: bytes | None,
    mask_prompt: str | None,
    whole: bool,
) -> DecodedUploads:
    """``decode_uploads`` in a worker, which the kernel ends (SIGXCPU) past ``cpu_limit_s`` of
    CPU for this decode. RLIMIT_CPU counts the process's whole life, so the limit is set from
    what the worker has spent so far, and lifted afterwards (a soft limit can be raised again,
    a hard one cannot, so only the soft one is used)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(spent + cpu_limit_s), hard))
    try:
        return decode_uploads(image_data, mask_data, mask_prompt, whole)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


def _context() -> multiprocessing.context.BaseContext:
    """Workers started from a fresh interpreter (a forkserver, else spawn), never forked from
    the bot itself."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # The server imports the decoder once; each worker forked from it starts at once.
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class PictureDecoder:
    """Decodes uploads in ``workers`` processes (started when first needed), each decode
    bounded by ``cpu_limit_s`` of CPU; a request waits at most ``wait_s`` for a free worker."""

    def __init__(
        self, cpu_limit_s: float, *, workers: int = WORKERS, wait_s: float = WAIT_S
    ) -> None:
        self._cpu_limit_s = cpu_limit_s
        self._wait_s = wait_s
        # One single-process pool per worker: a worker ended for its CPU time breaks only its
        # own pool, never a decode running beside it.
        self._pools: list[ProcessPoolExecutor | None] = [None] * workers
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(workers):
            self._free.put_nowait(slot)

    async def decode(
        self,
        image_data: bytes,
        mask_data: bytes | None,
        mask_prompt: str | None,
        *,
        whole: bool = False,
    ) -> DecodedUploads:
        """``decode_uploads`` in a worker; ``UserFacingError`` when every worker stays busy,
        ``UserInputError`` when the pictures are refused or take too long to read."""
        try:
            slot = await asyncio.wait_for(self._free.get(), self._wait_s)
        except TimeoutError:
            raise UserFacingError(TOO_MANY) from None
        pool = self._pools[slot]
        if pool is None:
            pool = self._pools[slot] = ProcessPoolExecutor(
                max_workers=1, mp_context=_context(), initializer=_start_worker
            )
        work = functools.partial(
            _decode_within, self._cpu_limit_s, image_data, mask_data, mask_prompt, whole
        )
        running = asyncio.get_running_loop().run_in_executor(pool, work)
        # The worker is free again only when its decode has ended, even if the request that
        # asked for it was cancelled meanwhile.
        running.add_done_callback(functools.partial(self._ended, slot))
        try:
            return await asyncio.shield(running)
        except BrokenProcessPool:
            log.warning("an upload took over %.1fs of CPU to decode; refused", self._cpu_limit_s)
            raise UserInputError(TOO_SLOW) from None

    def _ended(self, slot: int, running: asyncio.Future[DecodedUploads]) -> None:
        if not running.cancelled() and isinstance(running.exception(), BrokenProcessPool):
            # Its worker was ended (its CPU time, or the memory killer): start a new one.
            pool = self._pools[slot]
            self._pools[slot] = None
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._free.put_nowait(slot)

    def close(self) -> None:
        """Stop the workers (they are started again if a decode comes later)."""
        for slot, pool in enumerate(self._pools):
            self._pools[slot] = None
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.shutdown(wait=False, cancel_futures=True)
