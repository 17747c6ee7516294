"""The GPU engine: one process that owns the GPU and turns job specs into images.

``engine.protocol`` is the contract with the bot and the only module the bot imports; it stays
free of torch. The rest: ``settings`` (ENGINE_* configuration), ``registry`` (loaded pipelines
under a memory budget), ``schedulers``, ``text_to_image`` and ``inpainting`` (one pipeline call
per group of compatible jobs, see ``batching`` and ``invariance``), ``safety``, ``metadata``,
``preview``, ``validation``, ``worker`` (requests in, events out), ``process`` (the child-process
loop) and ``cli`` (``python -m engine``).
"""
