"""``python -m bot.store.migrate [revision]``: upgrade the database whose URL comes on standard
input to ``revision`` (head by default), then exit; run by the bot at start
(:func:`bot.store.database.migrate_in_child`) so that its own process never loads Alembic."""

from __future__ import annotations

import asyncio
import sys
import traceback

from bot.store.database import create_engine, migrate


async def _upgrade(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine, revision)
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    """0 once migrated; else 1, the traceback for the bot's log, then one line for a person
    (the bot quotes the last line: ``bot.store.database.MigrationFailed``)."""
    revision = argv[0] if argv else "head"
    try:
        asyncio.run(_upgrade(sys.stdin.read().strip(), revision))
    except Exception as error:
        traceback.print_exc()
        cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
        said = str(cause).strip().splitlines()
        print(said[0] if said else type(cause).__name__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
