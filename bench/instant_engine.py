"""An engine process that answers every job at once: an infinitely fast GPU behind a real pipe.

The burst benchmarks want the bot's own costs. Standing in for the engine inside the bot's
process would leave out a part of them: reading each event from the pipe and decoding its
frame, and holding each result's own copy of its pictures. So this stands in
for ``python -m engine serve`` instead, speaking the same protocol on stdin and stdout, and the
bot talks to it through its own ``EngineClient``. Its own work (framing the answers) is in its
own process, like the real engine's.

Every ``RunBatch`` job gets ``Accepted`` and a ``Result`` with the same PNG per image
(``noise_png``: as large as a ``--side``-pixel square PNG can be). With ``ENGINE_SPOOL_DIR``
set, as the bot sets it for its engine, each picture is written there and named in the
frame (``engine.spool``), as the real engine does. Model requests are answered as done;
cancels find nothing left to cancel.

    python -m bench.instant_engine --side 512

Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
from pathlib import Path

from PIL import Image

from engine.protocol import (
    Accepted,
    Event,
    GeneratedImage,
    ListModels,
    LoadModel,
    ModelsReply,
    Ready,
    Result,
    RunBatch,
    Shutdown,
    UnloadModel,
    frame,
    read_message,
)
from engine.spool import spool_pictures


def noise_png(side: int = 512) -> bytes:
    """A PNG that does not compress: an upper bound for a generated image's bytes."""
    noise = random.Random(0).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), noise).save(buffer, format="PNG")
    return buffer.getvalue()


def serve(png: bytes, spool: Path | None) -> None:
    """Answer requests on stdin with frames on stdout until ``Shutdown`` or end of input."""
    out = sys.stdout.buffer
    out.write(frame(Ready(device="none", dtype="none", pid=os.getpid())))
    out.flush()
    while (message := read_message(sys.stdin.buffer)) is not None:
        if isinstance(message, Shutdown):
            break
        if isinstance(message, RunBatch):
            for job in message.jobs:
                images = tuple(GeneratedImage(seed, png, nsfw=False) for seed in job.seeds)
                result: Event = Result(job.job_id, images, model_revision=None, seconds=0.0)
                if spool is not None:
                    result = spool_pictures(result, spool)
                out.write(frame(Accepted(job_id=job.job_id)))
                out.write(frame(result))
        elif isinstance(message, ListModels | LoadModel | UnloadModel):
            out.write(frame(ModelsReply(request_id=message.request_id, ok=True, message="done")))
        out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=512, help="the result PNG's side in pixels")
    spool = os.environ.get("ENGINE_SPOOL_DIR")
    serve(noise_png(parser.parse_args().side), Path(spool) if spool else None)


if __name__ == "__main__":
    main()
