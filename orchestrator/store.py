"""The SQLAlchemy store: pipelines, executions and task runs, on SQLite or PostgreSQL.

Reads are methods here; writes to executions happen in a `Transaction` (see `transaction/`), opened
with `transaction()` or, to serialize every step of one execution, with `locked(execution_id)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from orchestrator import defaults, migrations, notices
from orchestrator.document import RollbackTarget, to_document
from orchestrator.endpoints import Endpoint, probe_of
from orchestrator.errors import Conflict, NotFound
from orchestrator.execution import Child, Event, Execution, ExecutionState, PipelineRecord, TaskRun
from orchestrator.notices import Notice
from orchestrator.pipeline import Pipeline
from orchestrator.schema import endpoints, executions, now, pipelines
from orchestrator.settings import Settings
from orchestrator.snapshots import DocumentCache, digest
from orchestrator.status import ExecutionStatus
from orchestrator.transaction import (
    EXECUTION_COLUMNS,
    ROLLING_BACK_RELATIONS,
    Transaction,
    execution_from_row,
    new_id,
    pipeline_from_row,
)
from orchestrator.vault import Vault
from orchestrator.watchdog import Watchdog
from orchestrator.workspace import endpoints_of

log = logging.getLogger(__name__)


def make_engine(url: str, *, hold_seconds: float = defaults.DB_WORKER_HOLD_SECONDS, pre_ping: bool = False) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, a busy timeout and write-locking transactions.

    On PostgreSQL, connecting and each statement have timeouts, and a connection held longer than `hold_seconds`
    is cut (see `watchdog.py`), so a database that hangs becomes an error within seconds. `pre_ping` tests
    each connection as it leaves the pool: the API does, so the first request after a database restart does not
    fail on a stale connection; workers do not (a ping is a round trip on every transaction) and retry instead.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if not parsed.drivername.startswith("sqlite"):
        timeouts = {
            "connect_timeout": defaults.DB_CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={defaults.DB_STATEMENT_TIMEOUT_SECONDS * 1000}",
        }
        engine = create_engine(
            parsed,
            pool_size=5,
            max_overflow=10,
            pool_recycle=300,
            pool_timeout=defaults.DB_POOL_TIMEOUT_SECONDS,
            connect_args=timeouts,
        )
        Watchdog(hold_seconds).watch(engine, ping=pre_ping)
        return engine
    engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are begun by the "begin" hook below, so they can take the write lock at once
        # (BEGIN IMMEDIATE) instead of failing with "database is locked" when a reader later writes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def require_current_schema(settings: Settings) -> None:
    """Raise SchemaOutdated unless the database is at this code's schema: servers check before they start."""
    engine = make_engine(settings.database_url)
    try:
        migrations.require_current(engine)
    finally:
        engine.dispose()


def upgrade_schema(settings: Settings) -> tuple[str | None, str]:
    """Bring the database to this code's schema (`rollway db upgrade`); its revisions before and after."""
    engine = make_engine(settings.database_url)
    try:
        before = migrations.current(engine)
        migrations.upgrade(engine)
        return before, migrations.head()
    finally:
        engine.dispose()


SWEEP_LOCK_KEY = 0x53776565  # "Swee"


def _access(endpoint: Endpoint) -> tuple[object, ...]:
    """What decides whether and how an endpoint answers: a change of any of it makes its last probe moot."""
    return (
        *(endpoint.type, endpoint.url, endpoint.insecure, endpoint.token, endpoint.ca_data, endpoint.kubeconfig),
        endpoint.known_hosts,
    )


class Store:
    """Rollway's persistent state."""

    def __init__(self, engine: Engine, vault: Vault | None = None) -> None:
        self.engine = engine
        self.vault = vault or Vault(None)
        self.documents = DocumentCache()
        # Called with the ids of the notifications a committed transaction recorded (the engine sends them).
        self.on_notices: Callable[[list[str]], None] | None = None
        self.disposed = False

    @classmethod
    def connect(
        cls,
        url: str,
        secret_key: str | None = None,
        *,
        old_secret_keys: Sequence[str] = (),
        migrate: bool = True,
        for_api: bool = False,
    ) -> Store:
        """A store on a database URL; `secret_key` seals credentials, it and `old_secret_keys` open them.

        With `migrate` its schema is brought to this code's revision; without, it must be there already
        (SchemaOutdated otherwise), as for servers, which leave upgrades to `rollway db upgrade`. `for_api`
        pings connections before use and cuts them sooner (see `make_engine`).
        """
        engine = (
            make_engine(url, hold_seconds=defaults.DB_API_HOLD_SECONDS, pre_ping=True) if for_api else make_engine(url)
        )
        store = cls(engine, Vault(secret_key, old_secret_keys))
        try:
            if migrate:
                migrations.upgrade(store.engine)
            else:
                migrations.require_current(store.engine)
        except Exception:
            store.dispose()
            raise
        return store

    def dispose(self) -> None:
        """Close the pool for good: long readers (the pages' live streams) see `disposed` and stop."""
        self.disposed = True
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction: committed with the events of its changes when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            tx = Transaction(conn, self.documents)
            yield tx
            tx.flush_events()
        self._committed(tx)

    def _committed(self, tx: Transaction) -> None:
        """Hand on the notifications a committed transaction recorded; a failure leaves them to the sweep."""
        if tx.notices and self.on_notices is not None:
            try:
                self.on_notices(tx.notices)
            except Exception as error:  # whatever the broker raised: the rows are kept, the sweep sends them
                log.warning("%d notification(s) are left to the sweep: %s", len(tx.notices), error)

    @contextmanager
    def autocommit(self) -> Iterator[Transaction]:
        """Statements that each commit on their own: no BEGIN and COMMIT round trips on PostgreSQL.

        Only for work whose every statement stands alone, such as a claim followed by reads.
        """
        if self.engine.dialect.name == "sqlite":
            with self.transaction() as tx:
                yield tx
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            tx = Transaction(conn, self.documents)
            yield tx
            tx.flush_events()

    def claim(self, task_run_id: str, attempt: int, holder: str, lease_seconds: float) -> TaskRun | None:
        """Take a QUEUED task run for this attempt with a lease held by `holder`; see `Transaction.claim_task_run`.

        Retried after its answer was lost (the database went away just then), it finds the claim it made.
        The claim and its event are one statement on PostgreSQL, two on SQLite.
        """
        lease_until = now() + timedelta(seconds=lease_seconds)
        with self.autocommit() as tx:
            run = tx.claim_task_run(task_run_id, attempt, holder, lease_until)
            return run or tx.held_by(task_run_id, attempt, holder)

    def renew_lease(self, run: TaskRun, holder: str, lease_seconds: float) -> bool:
        """Extend `holder`'s lease on a running attempt; False when it no longer holds it."""
        with self.autocommit() as tx:
            return tx.renew_lease(run.id, run.attempt, holder, now() + timedelta(seconds=lease_seconds))

    def cancel_abandoned(self, task_run_id: str, attempt: int, actor: str = "") -> bool:
        """Cancel a QUEUED attempt whose execution ended before a worker got to it."""
        with self.transaction() as tx:
            return tx.cancel_abandoned(task_run_id, attempt, actor)

    def mark_sent(self, attempts: Iterable[tuple[str, int]], stamp: datetime | None) -> None:
        """Record when these attempts (task run id, attempt) were handed to the broker (None: the send failed)."""
        with self.transaction() as tx:
            tx.mark_sent(attempts, stamp)

    @contextmanager
    def sweep_lock(self) -> Iterator[bool]:
        """Whether this process may sweep now: on PostgreSQL a session advisory lock, so two sweeps (two beats, or a
        slow pass overlapping the next) never work at once; SQLite serializes its writers anyway."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": SWEEP_LOCK_KEY}).scalar())
            try:
                yield held
            finally:
                if held:
                    self._unlock_sweep(conn)

    @staticmethod
    def _unlock_sweep(conn: Connection) -> None:
        # If the connection is gone (a long pass the watchdog cut, the database went away), its lock went with it.
        with suppress(SQLAlchemyError):
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SWEEP_LOCK_KEY})

    def events(self, execution_id: str) -> list[Event]:
        """An execution's history, oldest first; NotFound for an unknown execution."""
        with self.transaction() as tx:
            tx.execution(execution_id)
            return tx.events(execution_id)

    @contextmanager
    def locked(self, execution_id: str) -> Iterator[tuple[Transaction, ExecutionState]]:
        """A transaction holding the execution's row lock, with the execution's state as of that lock."""
        with self.transaction() as tx:
            yield tx, tx.state(execution_id, lock=True)

    # -- pipelines

    @staticmethod
    def _pipeline_values(pipeline: Pipeline, stamp: datetime) -> dict[str, Any]:
        links = [task.rollback for _, _, task, _ in pipeline.ordered_tasks() if task.rollback]
        links += [stage.rollback for stage in pipeline.stages.values() if stage.rollback]
        document = to_document(pipeline)
        return {
            "project": pipeline.project,
            "name": pipeline.name,
            "enabled": pipeline.enabled,
            "concurrency": pipeline.concurrency,
            "document": document,
            "document_hash": digest(document),
            "rollback_targets": sorted({link.pipeline for link in links}),
            "endpoint_names": sorted(
                {name for _, _, task, _ in pipeline.ordered_tasks() for name in endpoints_of(pipeline, task).values()}
            ),
            "updated_at": stamp,
        }

    def add_pipeline(self, pipeline: Pipeline) -> PipelineRecord:
        """Save a new pipeline; raises Conflict if its project already has one of that name."""
        return self.add_pipelines([pipeline])[0]

    def add_pipelines(self, new: list[Pipeline]) -> list[PipelineRecord]:
        """Save new pipelines all together or none (a template's pipelines); Conflict on a name taken."""
        stamp = now()
        rows = [
            self._pipeline_values(pipeline, stamp) | {"id": new_id(), "created_at": stamp, "execution_count": 0}
            for pipeline in new
        ]
        try:
            with self.engine.begin() as conn:
                for row in rows:
                    conn.execute(pipelines.insert().values(**row))
        except IntegrityError as error:
            names = ", ".join(f"'{pipeline.name}'" for pipeline in new)
            which = names if len(new) == 1 else f"one of {names}"
            raise Conflict(f"project '{new[0].project}' already has a pipeline named {which}") from error
        return [self.get_pipeline(row["id"]) for row in rows]

    def replace_pipeline(self, pipeline_id: str, pipeline: Pipeline) -> PipelineRecord:
        """Save a new version of a pipeline; running executions keep the version they started with.

        Raises Conflict when the new name is taken, or when the pipeline is renamed or moved while other
        pipelines name it as their rollback (their links would silently break).
        """
        try:
            with self.engine.begin() as conn:
                current = self._named(conn, pipeline_id)
                if current != (pipeline.project, pipeline.name):
                    self._refuse_if_linked(conn, *current, "renamed or moved")
                conn.execute(
                    pipelines.update()
                    .where(pipelines.c.id == pipeline_id)
                    .values(**self._pipeline_values(pipeline, now()))
                )
        except IntegrityError as error:
            raise Conflict(f"project '{pipeline.project}' already has a pipeline named '{pipeline.name}'") from error
        return self.get_pipeline(pipeline_id)

    def apply_pipelines(self, changes: Sequence[tuple[str | None, Pipeline]]) -> list[PipelineRecord]:
        """Save a batch in one transaction, all or none: (None, pipeline) creates it, (id, pipeline) replaces that
        pipeline under its own name. Conflict if a name was taken meanwhile; NotFound if a pipeline went."""
        stamp = now()
        ids = [pipeline_id or new_id() for pipeline_id, _ in changes]
        try:
            with self.engine.begin() as conn:
                for saved_id, (pipeline_id, pipeline) in zip(ids, changes, strict=True):
                    values = self._pipeline_values(pipeline, stamp)
                    if pipeline_id is None:
                        fresh = {"id": saved_id, "created_at": stamp, "execution_count": 0}
                        conn.execute(pipelines.insert().values(**values, **fresh))
                        continue
                    updated = conn.execute(pipelines.update().where(pipelines.c.id == pipeline_id).values(**values))
                    if updated.rowcount != 1:
                        raise NotFound(f"pipeline '{pipeline.name}' was deleted meanwhile; nothing was applied")
        except IntegrityError as error:
            raise Conflict(
                "a pipeline of the batch was created meanwhile by someone else; nothing was applied"
            ) from error
        return [self.get_pipeline(saved_id) for saved_id in ids]

    @staticmethod
    def _named(conn: Connection, pipeline_id: str) -> tuple[str, str]:
        """(project, name) of a pipeline."""
        found = conn.execute(select(pipelines.c.project, pipelines.c.name).where(pipelines.c.id == pipeline_id)).first()
        if found is None:
            raise NotFound(f"there is no pipeline with id '{pipeline_id}'")
        return found.project, found.name

    @staticmethod
    def _refuse_if_linked(conn: Connection, project: str, name: str, change: str) -> None:
        """Raise Conflict if other pipelines of the project name this one as their rollback."""
        rows = conn.execute(
            select(pipelines.c.name, pipelines.c.rollback_targets).where(pipelines.c.project == project)
        )
        linking = sorted(row.name for row in rows if name in row.rollback_targets and row.name != name)
        if linking:
            raise Conflict(
                f"pipeline '{name}' is the rollback of {', '.join(repr(item) for item in linking)} "
                f"and cannot be {change}; remove those links first"
            )

    def get_pipeline(self, pipeline_id: str) -> PipelineRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id)).first()
        if row is None:
            raise NotFound(f"there is no pipeline with id '{pipeline_id}'")
        return pipeline_from_row(row, self.documents)

    def find_pipeline(self, project: str, name: str) -> PipelineRecord | None:
        with self.transaction() as tx:
            return tx.find_pipeline(project, name)

    def list_pipelines(self, project: str | None = None, name: str | None = None) -> list[PipelineRecord]:
        query = select(pipelines).order_by(pipelines.c.project, pipelines.c.name)
        if project is not None:
            query = query.where(pipelines.c.project == project)
        if name is not None:
            query = query.where(pipelines.c.name == name)
        with self.engine.connect() as conn:
            return [pipeline_from_row(row, self.documents) for row in conn.execute(query)]

    def rollback_target(self, project: str, name: str) -> RollbackTarget | None:
        """What validation needs of a pipeline named as a rollback."""
        record = self.find_pipeline(project, name)
        if record is None:
            return None
        pipeline = record.pipeline
        return RollbackTarget(name, frozenset(pipeline.input), frozenset(pipeline.mandatory_inputs()))

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline (its executions stay); raises Conflict while another pipeline links to it."""
        with self.engine.begin() as conn:
            self._refuse_if_linked(conn, *self._named(conn, pipeline_id), "deleted")
            conn.execute(pipelines.delete().where(pipelines.c.id == pipeline_id))

    # -- endpoints

    def _endpoint(self, row: Any) -> Endpoint:
        credentials = self.vault.open(row.credentials)
        return Endpoint(
            id=row.id,
            name=row.name,
            project=row.project,
            type=row.type,
            url=row.url,
            insecure=row.insecure,
            token=credentials.get("token"),
            ca_data=credentials.get("ca_data"),
            kubeconfig=credentials.get("kubeconfig"),
            restricted=row.restricted,
            username=credentials.get("username"),
            password=credentials.get("password"),
            sender=credentials.get("from"),
            starttls=credentials.get("starttls") == "true",
            known_hosts=credentials.get("known_hosts"),
            branch=credentials.get("branch"),
            created_at=row.created_at,
            updated_at=row.updated_at,
            probe=probe_of(row),
        )

    def _endpoint_values(self, endpoint: Endpoint) -> dict[str, Any]:
        secrets = {
            name: value
            for name, value in (
                ("token", endpoint.token),
                ("ca_data", endpoint.ca_data),
                ("kubeconfig", endpoint.kubeconfig),
                ("username", endpoint.username),
                ("password", endpoint.password),
                ("from", endpoint.sender),
                ("starttls", "true" if endpoint.starttls else None),
                ("known_hosts", endpoint.known_hosts),
                ("branch", endpoint.branch),
            )
            if value
        }
        return {
            "project": endpoint.project,
            "name": endpoint.name,
            "type": endpoint.type,
            "url": endpoint.url,
            "insecure": endpoint.insecure,
            "restricted": endpoint.restricted,
            "credentials": self.vault.seal(secrets),
            "updated_at": now(),
        }

    def add_endpoint(self, endpoint: Endpoint) -> Endpoint:
        """Save a new endpoint, its credentials sealed; raises Conflict if its project has one of that name."""
        values = self._endpoint_values(endpoint) | {"id": endpoint.id, "created_at": now()}
        try:
            with self.engine.begin() as conn:
                conn.execute(endpoints.insert().values(**values))
        except IntegrityError as error:
            raise Conflict(f"project '{endpoint.project}' already has an endpoint named '{endpoint.name}'") from error
        return self.get_endpoint(endpoint.id)

    def replace_endpoint(self, endpoint: Endpoint) -> Endpoint:
        """Save an endpoint's new URL or credentials; raises Conflict if renamed while pipelines use it."""
        try:
            with self.engine.begin() as conn:
                current = conn.execute(select(endpoints).where(endpoints.c.id == endpoint.id)).first()
                if current is None:
                    raise NotFound(f"there is no endpoint with id '{endpoint.id}'")
                if (current.project, current.name) != (endpoint.project, endpoint.name):
                    self._refuse_if_used(conn, current.project, current.name, "renamed or moved")
                values = self._endpoint_values(endpoint)
                if _access(self._endpoint(current)) != _access(endpoint):
                    # Its last answer was to another URL or other credentials: it says nothing of these.
                    values |= {"probed_at": None, "probe_ok": None, "probe_message": None}
                conn.execute(endpoints.update().where(endpoints.c.id == endpoint.id).values(**values))
        except IntegrityError as error:
            raise Conflict(f"project '{endpoint.project}' already has an endpoint named '{endpoint.name}'") from error
        return self.get_endpoint(endpoint.id)

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        """An endpoint with its credentials opened."""
        with self.engine.connect() as conn:
            row = conn.execute(select(endpoints).where(endpoints.c.id == endpoint_id)).first()
        if row is None:
            raise NotFound(f"there is no endpoint with id '{endpoint_id}'")
        return self._endpoint(row)

    def list_endpoints(self, project: str | None = None) -> list[Endpoint]:
        query = select(endpoints).order_by(endpoints.c.project, endpoints.c.name)
        if project is not None:
            query = query.where(endpoints.c.project == project)
        with self.engine.connect() as conn:
            return [self._endpoint(row) for row in conn.execute(query)]

    def endpoint_exists(self, project: str, name: str) -> bool:
        with self.transaction() as tx:
            return tx.endpoint_id(project, name) is not None

    def delete_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint; raises Conflict while a pipeline of its project names it."""
        with self.engine.begin() as conn:
            found = conn.execute(
                select(endpoints.c.project, endpoints.c.name).where(endpoints.c.id == endpoint_id)
            ).first()
            if found is None:
                raise NotFound(f"there is no endpoint with id '{endpoint_id}'")
            self._refuse_if_used(conn, found.project, found.name, "deleted")
            conn.execute(endpoints.delete().where(endpoints.c.id == endpoint_id))

    @staticmethod
    def _refuse_if_used(conn: Connection, project: str, name: str, change: str) -> None:
        rows = conn.execute(select(pipelines.c.name, pipelines.c.endpoint_names).where(pipelines.c.project == project))
        users = sorted(row.name for row in rows if name in row.endpoint_names)
        if users:
            raise Conflict(
                f"endpoint '{name}' is used by {', '.join(repr(user) for user in users)} and cannot be {change}"
            )

    # -- reading executions

    def notices(self, execution_id: str) -> list[Notice]:
        """An execution's notifications and what became of each, oldest first."""
        with self.transaction() as tx:
            return notices.of_execution(tx.conn, execution_id)

    def get_execution(self, execution_id: str) -> Execution:
        with self.transaction() as tx:
            return tx.execution(execution_id)

    def load_state(self, execution_id: str) -> ExecutionState:
        """An execution with its pipeline snapshot and all its task runs."""
        with self.transaction() as tx:
            return tx.state(execution_id)

    def task_runs(self, execution_id: str) -> list[TaskRun]:
        with self.transaction() as tx:
            return tx.task_runs(execution_id)

    def get_task_run(self, task_run_id: str) -> TaskRun:
        with self.transaction() as tx:
            return tx.task_run(task_run_id)

    def list_executions(
        self,
        *,
        pipeline: str | None = None,
        project: str | None = None,
        status: Iterable[ExecutionStatus] | None = None,
        rollback: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Execution]:
        """Executions, newest first; `pipeline` is a pipeline id or name, `project` None means every project."""
        query = select(*EXECUTION_COLUMNS).order_by(executions.c.created_at.desc(), executions.c.id)
        if project is not None:
            query = query.where(executions.c.project == project)
        if pipeline is not None:
            query = query.where((executions.c.pipeline_id == pipeline) | (executions.c.pipeline_name == pipeline))
        if status is not None:
            query = query.where(executions.c.status.in_([str(item) for item in status]))
        if rollback is not None:
            rolls_back = executions.c.relation.in_(ROLLING_BACK_RELATIONS)
            query = query.where(rolls_back if rollback else (executions.c.relation.is_(None) | ~rolls_back))
        with self.engine.connect() as conn:
            return [execution_from_row(row) for row in conn.execute(query.limit(limit).offset(offset))]

    def children(self, parent_ids: Iterable[str]) -> dict[str, list[Child]]:
        """The child executions of each of these executions, oldest first (those with none are left out)."""
        with self.transaction() as tx:
            return tx.children(parent_ids)
