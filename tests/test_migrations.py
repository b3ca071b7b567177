"""Schema migrations, the same stories on SQLite and on a PostgreSQL database of their own."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, column, create_engine, select, table, text

from orchestrator import migrations
from orchestrator.document import load_pipeline
from orchestrator.errors import SchemaOutdated, SchemaTooNew
from orchestrator.execution import Relation
from orchestrator.schema import events, executions, metadata, task_runs
from orchestrator.settings import Settings, sqlite_url
from orchestrator.store import Store, make_engine
from orchestrator.vault import Vault

from rollway_testing import POSTGRES_DB, REDIS_URL, create_database, rollway_command, settings_env

# Not the shared test database: these tests drop and make whole schemas (named after it, so two suites run side by
# side with their own ROLLWAY_TEST_DATABASE never share one).
DATABASE = f"{POSTGRES_DB}_migrations"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# Columns older revisions had and today's `metadata` has not.
OLD_COLUMNS: dict[str, Any] = {"rollback": sa.Boolean(), "rollback_of": sa.String()}


@pytest.fixture(scope="module")
def postgres_server() -> str:
    """The URL of this module's own PostgreSQL database, created if missing."""
    return create_database(DATABASE)


def _empty_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend in turn."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "rollway.db")
        return
    server: str = request.getfixturevalue("postgres_server")
    _empty_postgres(server)
    yield server
    _empty_postgres(server)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


def differences(engine: Engine) -> list[Any]:
    """What the database lacks or has beyond `metadata` (Alembic's autogenerate comparison)."""
    with engine.connect() as conn:
        found: list[Any] = compare_metadata(MigrationContext.configure(conn), metadata)
        return found


def insert(engine: Engine, name: str, row: dict[str, Any]) -> None:
    """Insert a row naming only the columns given (today's `metadata` has columns an old schema lacks)."""
    known = metadata.tables[name].c
    columns = [column(key, known[key].type if key in known else OLD_COLUMNS[key]) for key in row]
    with engine.begin() as conn:
        conn.execute(table(name, *columns).insert().values(row))


def at_0001_with_a_run(engine: Engine) -> tuple[str, str]:
    """The database at revision 0001 holding a pipeline, an execution and a task run; pipeline and execution ids."""
    migrations.upgrade(engine, "0001")
    tasks = {"Test": {"type": "Condition", "input": {"condition": "true"}}}
    stage = {"taskOrder": ["Test"], "tasks": tasks}
    document = {"name": "Build", "project": "shop", "stageOrder": ["CI"], "stages": {"CI": stage}}
    # The pipelines table is the same at 0001 and at head: today's store can write it.
    record = Store(engine, Vault(None)).add_pipeline(load_pipeline(document, targets=None))
    execution = {"id": "e1", "pipeline_id": record.id, "pipeline_name": "Build", "project": "shop", "index": 1}
    execution |= {"status": "RUNNING", "status_message": "", "comments": "before the upgrade", "input": {}}
    execution |= {"output": {}, "document": document, "document_hash": "hash", "rollback": False}
    insert(engine, "executions", execution | {"requested_by": "tester", "created_at": NOW, "updated_at": NOW})
    run = {"id": "t1", "execution_id": "e1", "stage": "CI", "name": "Test", "type": "Condition", "position": 0}
    run |= {"status": "RUNNING", "status_message": "", "input": {"condition": "true"}, "bindings": {}}
    run |= {"endpoints": {}, "state": {}, "attempt": 1, "started_at": NOW, "updated_at": NOW}
    insert(engine, "task_runs", run)
    return record.id, "e1"


def stamped_0001_without_alembic(engine: Engine) -> None:
    """Drop the version table: what `metadata.create_all` made before migrations (revision 0001's schema)."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))


def test_the_revisions_one_by_one_make_exactly_the_schema(engine: Engine) -> None:
    # Given an empty database
    # When every revision runs in turn (0001 first, so no shortcut is taken)
    migrations.upgrade(engine, "0001")
    migrations.upgrade(engine)

    # Then the database is at head and is what `metadata` describes, no more and no less
    assert migrations.current(engine) == migrations.head() == "0006"
    assert differences(engine) == []
    migrations.require_current(engine)


def test_a_new_database_is_made_at_head_at_once(engine: Engine) -> None:
    # Given an empty database, When it is upgraded
    migrations.upgrade(engine)

    # Then it is at head, the schema is exactly `metadata`, and a second upgrade changes nothing
    assert migrations.current(engine) == migrations.head()
    assert differences(engine) == []
    migrations.upgrade(engine)
    assert migrations.current(engine) == migrations.head()


def test_data_written_at_0001_is_kept_by_the_upgrade(engine: Engine, url: str) -> None:
    # Given a database at 0001 with a pipeline, an execution and a running task run
    pipeline_id, execution_id = at_0001_with_a_run(engine)

    # When it is upgraded to head
    migrations.upgrade(engine)

    # Then today's store reads all three back, the new columns of the run empty
    store = Store.connect(url, migrate=False)
    try:
        assert store.get_pipeline(pipeline_id).pipeline.name == "Build"
        execution = store.get_execution(execution_id)
        assert (execution.comments, execution.created_at) == ("before the upgrade", NOW)
        [run] = store.task_runs(execution_id)
        assert (run.name, run.status, run.attempt, run.input) == ("Test", "RUNNING", 1, {"condition": "true"})
        with store.engine.connect() as conn:
            row = conn.execute(select(task_runs).where(task_runs.c.id == "t1")).one()
        assert (row.worker, row.sent_at, row.lease_expires_at, row.dispatch_after) == ("", None, None, None)
    finally:
        store.dispose()
    assert differences(engine) == []


def test_a_database_made_by_create_all_before_migrations_is_recognised(engine: Engine) -> None:
    # Given the tables of 0001 with data, as `metadata.create_all` made them: no alembic_version
    _, execution_id = at_0001_with_a_run(engine)
    stamped_0001_without_alembic(engine)
    assert migrations.current(engine) is None
    with pytest.raises(SchemaOutdated, match="has no schema revision"):
        migrations.require_current(engine)

    # When it is upgraded
    migrations.upgrade(engine)

    # Then it was taken for 0001 and brought to head, the data still there
    assert migrations.current(engine) == migrations.head()
    assert differences(engine) == []
    with engine.connect() as conn:
        found = conn.execute(select(task_runs.c.id, task_runs.c.worker).where(task_runs.c.execution_id == execution_id))
        assert found.all() == [("t1", "")]


def test_a_database_made_by_create_all_of_the_durable_execution_schema_is_taken_for_0002(engine: Engine) -> None:
    # Given the tables as the commit that added the outbox, lease and events made them: no alembic_version
    metadata.create_all(engine)
    with engine.begin() as conn:  # what came after 0002
        for table in (
            "notifications",
            "user_operations",
            "audit",
            "trigger_deliveries",
            "triggers",
            "variables",
            "tokens",
        ):
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("ALTER TABLE task_runs DROP COLUMN sealed_input"))
        conn.execute(text("ALTER TABLE endpoints DROP COLUMN restricted"))
        # The tables are empty: SQLite may copy this one (batch mode) with its foreign keys on.
        with Operations(MigrationContext.configure(conn)).batch_alter_table("executions") as old:
            old.drop_column("requested_by_admin")
            old.drop_index("ix_executions_parent")
            for name in ("parent_id", "relation", "cause"):
                old.drop_column(name)
            old.add_column(sa.Column("rollback", sa.Boolean(), nullable=False))
            old.add_column(sa.Column("rollback_of", sa.String(36), nullable=True))
            old.add_column(sa.Column("rollback_execution_id", sa.String(36), nullable=True))
            old.create_foreign_key("fk_rollback_of", "executions", ["rollback_of"], ["id"], ondelete="SET NULL")
            old.create_index("ix_executions_rollback_of", ["rollback_of"])
        for column in ("probed_at", "probe_ok", "probe_message"):
            conn.execute(text(f"ALTER TABLE endpoints DROP COLUMN {column}"))

    # When it is upgraded, Then nothing is added twice and it is at head
    migrations.upgrade(engine)
    assert migrations.current(engine) == migrations.head()
    assert differences(engine) == []


def test_a_rollback_recorded_at_0003_becomes_a_child_of_relation_rollback(engine: Engine, url: str) -> None:
    # Given a database at 0003 with a release rolling back, its rollback running, and the history of both
    pipeline_id, release = at_0001_with_a_run(engine)
    migrations.upgrade(engine, "0003")
    with engine.begin() as conn:
        rolling = {"status": "ROLLING_BACK", "status_message": "rolling back: task CI.Test failed: exit 1"}
        conn.execute(executions.update().where(executions.c.id == release).values(rolling))
    child = {"id": "e2", "pipeline_id": pipeline_id, "pipeline_name": "Build", "project": "shop", "index": 2}
    child |= {"status": "RUNNING", "status_message": "", "comments": "rollback of #1", "input": {}, "output": {}}
    child |= {"document": {}, "document_hash": "hash", "rollback": True, "rollback_of": release}
    insert(engine, "executions", child | {"requested_by": "tester", "created_at": NOW, "updated_at": NOW})
    insert(engine, "events", {"at": NOW, "execution_id": release, "status": "ROLLING_BACK", "message": "", "actor": ""})

    # When it is upgraded to head
    migrations.upgrade(engine)

    # Then the rollback is the release's child of relation 'rollback', the release keeps its cause without the
    # prefix, and nothing referring to the copied table was lost (SQLite copies it)
    store = Store.connect(url, migrate=False)
    try:
        rollback, parent = store.get_execution("e2"), store.get_execution(release)
        assert (rollback.parent_id, rollback.relation, rollback.rollback) == (release, Relation.ROLLBACK, True)
        assert (parent.parent_id, parent.relation, parent.rollback) == (None, None, False)
        assert parent.cause == "task CI.Test failed: exit 1"
        assert [child.id for child in store.children([release])[release]] == ["e2"]
        assert [run.id for run in store.task_runs(release)] == ["t1"]
        with store.engine.connect() as conn:
            assert conn.execute(select(events.c.status).where(events.c.execution_id == release)).all() == [
                ("ROLLING_BACK",)
            ]
    finally:
        store.dispose()
    assert differences(engine) == []


def test_a_database_upgraded_by_a_newer_rollway_is_refused_clearly(engine: Engine) -> None:
    # Given a database at a revision this code does not know
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))

    # Then neither a check nor an upgrade goes on with it
    with pytest.raises(SchemaTooNew, match="revision 0999, which this Rollway does not know"):
        migrations.require_current(engine)
    with pytest.raises(SchemaTooNew, match="0999"):
        migrations.upgrade(engine)


def test_a_store_that_must_not_migrate_refuses_an_empty_database(url: str) -> None:
    # Given an empty database, Then a store that may not migrate refuses it, naming the command
    with pytest.raises(SchemaOutdated, match=r"has no schema revision .* run `rollway db upgrade`"):
        Store.connect(url, migrate=False)


def test_a_store_that_must_not_migrate_refuses_an_old_schema(engine: Engine, url: str) -> None:
    # Given a database at 0001
    migrations.upgrade(engine, "0001")

    # Then a store that may not migrate refuses it, naming both revisions and the command
    with pytest.raises(SchemaOutdated) as refused:
        Store.connect(url, migrate=False)
    assert refused.value.message == (
        f"the database is at revision 0001 and this Rollway needs revision {migrations.head()}: "
        "run `rollway db upgrade`"
    )
    # ... and a store that may migrate upgrades it
    Store.connect(url).dispose()
    assert migrations.current(engine) == migrations.head()


def _rollway(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = settings_env(Settings(database_url=url, redis_url=REDIS_URL))
    command = [*rollway_command(), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_servers_refuse_an_old_schema_until_rollway_db_upgrade(engine: Engine, url: str) -> None:
    # Given a database at 0001
    migrations.upgrade(engine, "0001")

    # When `rollway worker`, `rollway serve` and `rollway beat` start, Then each exits at once with the command to run
    for server in (["worker", "-c", "1"], ["serve", "--port", "0"], ["beat"]):
        finished = _rollway(url, *server)
        assert finished.returncode == 1, finished
        assert "run `rollway db upgrade`" in finished.stderr and "revision 0001" in finished.stderr

    # When `rollway db upgrade` runs, Then it says where the schema was and is, and it is at head
    upgraded = _rollway(url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded
    assert upgraded.stdout.strip() == f"database schema: revision 0001 -> {migrations.head()}"
    assert migrations.current(engine) == migrations.head()
    # ... and again, it has nothing left to do
    head = migrations.head()
    assert _rollway(url, "db", "upgrade").stdout.strip() == f"database schema: revision {head} -> {head}"
