"""Schema revisions (Alembic): which revision a database is at, and bringing it to the one this code needs.

The revisions are in `versions/`, written by hand; `metadata` in `orchestrator/schema.py` is what they add
up to (tests/test_migrations.py holds them to it). There is no alembic.ini: the configuration is built here
and the revisions run on a connection handed to `env.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from orchestrator.errors import SchemaOutdated, SchemaTooNew
from orchestrator.schema import metadata

# An API and workers may start at once: on PostgreSQL, upgrades take turns on this advisory lock.
SCHEMA_LOCK_KEY = 0x526F6C6C  # "Roll"
UPGRADE_COMMAND = "rollway db upgrade"
FOLDER = Path(__file__).parent


@cache
def _scripts() -> ScriptDirectory:
    # Read once per process: reading imports every revision file.
    return ScriptDirectory(str(FOLDER))


def head() -> str:
    """The revision this code needs."""
    revision = _scripts().get_current_head()
    if revision is None:
        raise RuntimeError(f"no schema revisions in {FOLDER}")
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at; None if it has none (empty, or made before migrations)."""
    with engine.connect() as conn:
        return _revision(conn)


def require_current(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database is at `head()`, SchemaTooNew if a newer Rollway upgraded it."""
    found, needed = current(engine), head()
    if found == needed:
        return
    if found is not None and not _known(found):
        raise SchemaTooNew(
            f"the database schema is at revision {found}, which this Rollway does not know (its newest is "
            f"{needed}): a newer Rollway upgraded it; run that one"
        )
    where = f"is at revision {found}" if found else "has no schema revision (it is new, or older than migrations)"
    raise SchemaOutdated(f"the database {where} and this Rollway needs revision {needed}: run `{UPGRADE_COMMAND}`")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to `revision` (default: this code's), in one transaction.

    Tables made by `metadata.create_all` before migrations are first stamped with the revision they match.
    """
    with engine.connect() as conn, _foreign_keys_off(conn), conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        found = _revision(conn)
        if found is not None and not _known(found):
            raise SchemaTooNew(f"the database schema is at revision {found}, newer than this Rollway knows")
        if found is None and _create_fresh(conn, revision):
            return
        if found is None and inspect(conn).has_table("pipelines"):
            command.stamp(_config(conn), _legacy_revision(conn))
        command.upgrade(_config(conn), revision)
        _check_foreign_keys(conn)


@contextmanager
def _foreign_keys_off(conn: Connection) -> Iterator[None]:
    """On SQLite, no foreign-key actions while the revisions run: a revision that must copy a table to alter it
    (Alembic's batch mode) drops the old copy, and with foreign keys on that would delete the rows referring to it.

    SQLite ignores the pragma inside a transaction, so it is set on the driver's connection before one begins.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection) -> None:
    """Refuse (and so roll back) an upgrade that left a row referring to one that is not there (SQLite only)."""
    if conn.dialect.name == "sqlite":
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise RuntimeError(f"the schema upgrade left {len(broken)} row(s) with a broken foreign key: {broken[:5]}")


def _create_fresh(conn: Connection, revision: str) -> bool:
    """Make an empty SQLite database at head in one `create_all`, and stamp it (Alembic's cookbook); done?

    The tests make hundreds of SQLite files and the demo one: this keeps that fast. PostgreSQL, set up once
    per deployment, always runs the revisions, so CI runs them there.
    """
    if conn.dialect.name != "sqlite" or revision != "head" or inspect(conn).get_table_names():
        return False
    metadata.create_all(conn)
    MigrationContext.configure(conn).stamp(_scripts(), "head")
    return True


def _legacy_revision(conn: Connection) -> str:
    """The revision a schema made by `metadata.create_all` before migrations matches: 0002 from `worker` on.

    Migrations came with 0002, so no schema made without them can be newer.
    """
    columns = {column["name"] for column in inspect(conn).get_columns("task_runs")}
    return "0002" if "worker" in columns else "0001"


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    config.attributes["connection"] = conn
    return config
