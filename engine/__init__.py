"""The GPU engine: one process that owns the GPU and turns job specs into images.

``engine.protocol`` is the contract with the bot and, with ``engine.prompt_syntax`` (the web
UI's prompt weights, which the bot checks before a job exists) and ``engine.load_rules`` (what
a model's files must be before loading, which ``/models add`` checks), the only module the bot
imports; all three stay free of torch. Dependencies point one way
(``tests/engine/test_boundaries.py``): ``worker`` (the loop: requests in, events out),
``process`` (the child-process loop) and ``cli`` (``python -m engine``) -> ``run/`` (the
runners: a batch's checks, plain batches, course comparisons, and the one pipeline call and
finish they share) -> ``tasks/`` (one file per diffusers task with its own input checks; masks
from words; prompt embeddings) -> ``models/`` (registry, schedulers, batch invariance, fast
path) and ``images/`` (safety, metadata, previews, overlays). ``settings`` holds the ENGINE_*
configuration.
"""
