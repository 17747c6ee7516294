"""The engine as a child process: frames in on stdin, frames out on the original stdout.

Libraries print (progress bars, warnings, a stray ``print``); one byte of that in the frame
stream would corrupt it. So at start the original stdout is moved to a private descriptor that
only frames use, and descriptor 1 is pointed at stderr, where the client logs whatever arrives.
A reader thread takes requests while a batch runs, so a ``Cancel`` acts between two steps.

One writer thread frames every event and writes it, in the order events were made: the
GPU's thread only queues its events, so neither framing nor a pipe that the client is slow to
read ever holds up a pipeline call. With a spool folder (``ENGINE_SPOOL_DIR``) that thread
writes each result's pictures there first, and the frame names them (``engine.spool``).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from engine.protocol import Event, Request, Shutdown, frame, read_message
from engine.settings import EngineSettings
from engine.spool import spool_pictures

if TYPE_CHECKING:
    from engine.worker import Worker

log = logging.getLogger(__name__)

_REQUEST_TYPES = ("run_batch", "cancel", "load_model", "unload_model", "list_models", "shutdown")


def _claim_stdout() -> BinaryIO:
    """A private stream on the original stdout; descriptor 1 now leads to stderr."""
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(private, "wb")


class FrameWriter:
    """Writes events as frames from one thread of its own; ``write`` is safe from any thread.

    Events are written in the order ``write`` took them. ``close`` writes what is queued and
    stops the thread; call it before the process exits.
    """

    def __init__(self, stream: BinaryIO, spool: Path | None = None) -> None:
        self._stream = stream
        self._spool = spool
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="frames", daemon=True)
        self._thread.start()

    def write(self, event: Event) -> None:
        """Queue ``event`` for writing."""
        self._queue.put(event)

    def close(self) -> None:
        """Write every queued event, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                if self._spool is not None:
                    event = spool_pictures(event, self._spool)
                data = frame(event)
            except Exception:
                log.exception("could not frame a %s event; dropped", type(event).__name__)
                continue
            try:
                self._stream.write(data)
                if self._queue.empty():  # a burst of events goes out in one flush
                    self._stream.flush()
            except OSError:
                # The client is gone, so nobody can use what this process makes.
                log.error("the client closed the event stream; exiting")
                os._exit(1)
        try:
            self._stream.flush()
        except OSError:
            os._exit(1)


def _read_requests(stream: BinaryIO, worker: Worker) -> None:
    try:
        while (message := read_message(stream)) is not None:
            if message.type in _REQUEST_TYPES:
                worker.submit(message)  # type: ignore[arg-type]  # a request: its type says so
            else:
                log.warning("ignoring a %s message sent to the engine", message.type)
    except Exception:
        log.exception("unreadable request stream; shutting down")
    # End of input means the client is gone or done: finish the running batch, then exit.
    request: Request = Shutdown()
    worker.submit(request)


def serve(settings: EngineSettings) -> int:
    """Run the engine until ``Shutdown`` or the end of stdin; returns the exit status."""
    events = FrameWriter(_claim_stdout(), settings.spool_dir)
    # Imported after claiming stdout: importing torch and diffusers can already print.
    from engine.worker import Worker

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    worker = Worker(settings, events.write)
    reader = threading.Thread(
        target=_read_requests, args=(sys.stdin.buffer, worker), name="requests", daemon=True
    )
    reader.start()
    worker.warm_up()
    events.write(worker.ready())
    log.info("engine ready on %s (%s), pid %d", worker.device, worker.dtype, os.getpid())
    worker.serve()
    worker.close()
    events.close()
    log.info("engine stopped")
    return 0
