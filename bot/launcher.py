"""Start-up: settings, logging, database migration, then the Discord client.

Start-up problems a person can fix (no token, a refused token, Discord out of reach) end in
one line saying what to do and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.logging_setup import configure_logging
from bot.settings import ConfigError, Settings, StartupError, load_settings
from bot.store.database import MigrationFailed, create_engine, migrate_in_child

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
NO_TOKEN = (
    "DISCORD_TOKEN is not set: copy .env.example to .env and put your bot's token after "
    "DISCORD_TOKEN= (Discord Developer Portal > your application > Bot > Reset Token)."
)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"{error} Fix it in .env (see .env.example).", file=sys.stderr)
        return EXIT_CONFIG
    token = settings.discord.token.get_secret_value().strip()
    if not token:
        print(NO_TOKEN, file=sys.stderr)
        return EXIT_CONFIG

    configure_logging(secrets=[token])
    try:
        asyncio.run(run(settings))
    except StartupError as error:
        print(str(error), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return 0


async def run(settings: Settings) -> None:
    """Migrate the database, then hand over to the bot until it stops."""
    database = create_engine(settings.database.url)
    try:
        try:
            await migrate_in_child(settings.database.url)
        except MigrationFailed as error:
            log.error("migrating the database failed:\n%s", error.output)
            raise StartupError(
                f"Could not migrate the database at {_safe_url(settings.database.url)}: {error}"
            ) from None
        log.info("database ready at %s", _safe_url(settings.database.url))
        from bot.app import run_bot  # after migration: nothing touches Discord before it

        await run_bot(settings, database)
    finally:
        await database.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
