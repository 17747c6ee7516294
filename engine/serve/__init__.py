"""The engine as replicas of a Ray Serve deployment (``ENGINE_BACKEND=ray``).

Nothing here imports Ray: the bot deploys ``replica.EngineReplica`` with Ray's API, and Ray
pickles the class by reference, so only a replica's own process runs its constructor, which
is where torch and diffusers are first imported.
"""
