"""The stub's view of a Discord world: entities, their JSON payloads, commands and validation."""
