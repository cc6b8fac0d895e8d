"""The ledger's schema, changed only by migrations (Alembic, helpdesk/tickets/migrations/).

`migrate` brings a database to the newest revision, its rows kept: `make run` runs it once
before any process starts (`python -m helpdesk.tickets.schema upgrade`), and a Ledger opening a
database that is not current runs it too (tests, a command run by hand). A database made before
migrations is taken up by the first revision, which adds what it lacks.

Processes starting together on a new SQLite file (the workers, the action server) would each
create the tables and all but one fail ("table tickets already exists"): the upgrade runs under
an exclusive lock on a file beside the database, so one migrates and the others find it done.
For another database (PostgreSQL), run the upgrade before starting the processes, as `make run`
does.

    python -m helpdesk.tickets.schema upgrade    the newest revision
    python -m helpdesk.tickets.schema current    the database's revision and the newest
    python -m helpdesk.tickets.schema revision "what changes"   a new revision file to write
"""
import fcntl
import logging
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, List, Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@lru_cache(maxsize=1)
def head() -> str:
    """The newest revision."""
    newest = ScriptDirectory.from_config(_config()).get_current_head()
    assert newest is not None, "helpdesk/tickets/migrations has no revision"
    return newest


def current(engine: Engine) -> Optional[str]:
    """The database's revision; None before migrations (new, or made by an older version)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _lock(engine: Engine) -> Iterator[None]:
    """One migrating process at a time for a SQLite file; others databases: none (see above)."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    path = Path(database).with_name(Path(database).name + ".migrate.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrate(engine: Engine) -> Optional[str]:
    """Bring the database to the newest revision; the revision it was at, or None when it was
    current already."""
    if current(engine) == head():
        return None
    with _lock(engine):
        before = current(engine)  # another process may have migrated while this one waited
        if before == head():
            return None
        config = _config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        logger.info("ledger migrated", extra={"from": before or "none", "to": head()})
        return before or "none"


def migrate_ledger(database_url: str) -> Optional[str]:
    """`migrate` for a database URL (what `make run` does before starting the processes)."""
    # the engine's settings are the ledger's (SQLite pragmas): a function import, as
    # ledger.py imports this module
    from helpdesk.tickets.ledger import make_engine

    engine = make_engine(database_url)
    try:
        return migrate(engine)
    finally:
        engine.dispose()


def main(argv: List[str]) -> int:
    # the settings only here: the functions above take an engine
    from helpdesk.settings import load_settings
    from helpdesk.tickets.ledger import make_engine

    if not argv or argv[0] not in ("upgrade", "current", "revision"):
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    if argv[0] == "revision":
        if len(argv) != 2:
            print('usage: python -m helpdesk.tickets.schema revision "what changes"',
                  file=sys.stderr)
            return 2
        command.revision(_config(), message=argv[1])
        return 0
    engine = make_engine(load_settings().database_url)
    if argv[0] == "current":
        print(f"ledger revision {current(engine) or 'none'}; newest {head()}")
        return 0
    before = migrate(engine)
    print(f"ledger at revision {head()}" + (f" (was {before})" if before else " (already)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
