"""The SQLAlchemy store: pipelines, executions and task runs, on SQLite or PostgreSQL.

Every method is one transaction. Status changes are conditional UPDATEs (`WHERE status IN (...)` built
from the transition table), so when two workers race for the same change exactly one wins and learns it
from the return value.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from threading import Lock
from typing import Any

from sqlalchemy import Connection, Engine, Row, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from orchestrator.document import RollbackTarget, load_pipeline, to_document
from orchestrator.errors import Conflict, NotFound
from orchestrator.execution import Execution, ExecutionState, PipelineRecord, TaskRun
from orchestrator.pipeline import Pipeline, TaskKey
from orchestrator.schema import executions, metadata, now, pipelines, task_runs
from orchestrator.status import (
    EXECUTION_ALLOWED,
    RUN_ALLOWED,
    ExecutionStatus,
    RunStatus,
    predecessors,
)

_CACHE_SIZE = 512
ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.WAITING, ExecutionStatus.PAUSED, ExecutionStatus.CANCELING)


class _RaceLost(Exception):
    """Aborts a transaction whose conditional status change another worker made first."""


def new_id() -> str:
    return str(uuid.uuid4())


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, a busy timeout and write-locking transactions."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if not parsed.drivername.startswith("sqlite"):
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below start transactions, so they can take the write lock at once
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


def _execution(row: Row[Any]) -> Execution:
    return Execution(
        id=row.id,
        pipeline_id=row.pipeline_id,
        pipeline_name=row.pipeline_name,
        project=row.project,
        index=row._mapping["index"],
        status=ExecutionStatus(row.status),
        status_message=row.status_message,
        comments=row.comments,
        input=row.input,
        output=row.output,
        rollback=row.rollback,
        rollback_of=row.rollback_of,
        rollback_execution_id=row.rollback_execution_id,
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _task_run(row: Row[Any]) -> TaskRun:
    return TaskRun(
        id=row.id,
        execution_id=row.execution_id,
        stage=row.stage,
        name=row.name,
        type=row.type,
        status=RunStatus(row.status),
        status_message=row.status_message,
        input=row.input,
        output=row.output,
        state=row.state,
        attempt=row.attempt,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


_EXECUTION_COLUMNS = [column for column in executions.c if column.name != "document"]


class Store:
    """Rollway's persistent state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pipelines: OrderedDict[str, Pipeline] = OrderedDict()
        self._lock = Lock()

    @classmethod
    def connect(cls, url: str) -> Store:
        """A store on a database URL, with its tables created if missing."""
        store = cls(make_engine(url))
        store.create_schema()
        return store

    def create_schema(self) -> None:
        metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- pipelines

    def _pipeline_record(self, row: Row[Any]) -> PipelineRecord:
        return PipelineRecord(
            id=row.id,
            pipeline=load_pipeline(row.document, targets=None),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _pipeline_values(self, pipeline: Pipeline) -> dict[str, Any]:
        links = [task.rollback for _, _, task, _ in pipeline.ordered_tasks() if task.rollback]
        links += [stage.rollback for stage in pipeline.stages.values() if stage.rollback]
        return {
            "project": pipeline.project,
            "name": pipeline.name,
            "enabled": pipeline.enabled,
            "concurrency": pipeline.concurrency,
            "document": to_document(pipeline),
            "rollback_targets": sorted({link.pipeline for link in links}),
            "updated_at": now(),
        }

    def add_pipeline(self, pipeline: Pipeline) -> PipelineRecord:
        """Save a new pipeline; raises Conflict if its project already has one of that name."""
        values = self._pipeline_values(pipeline) | {"id": new_id(), "created_at": now(), "execution_count": 0}
        try:
            with self.engine.begin() as conn:
                conn.execute(pipelines.insert().values(**values))
        except IntegrityError as error:
            raise Conflict(f"project '{pipeline.project}' already has a pipeline named '{pipeline.name}'") from error
        return self.get_pipeline(values["id"])

    def replace_pipeline(self, pipeline_id: str, pipeline: Pipeline) -> PipelineRecord:
        """Save a new version of a pipeline; running executions keep the version they started with."""
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    pipelines.update().where(pipelines.c.id == pipeline_id).values(**self._pipeline_values(pipeline))
                )
        except IntegrityError as error:
            raise Conflict(f"project '{pipeline.project}' already has a pipeline named '{pipeline.name}'") from error
        if result.rowcount == 0:
            raise NotFound(f"there is no pipeline with id '{pipeline_id}'")
        return self.get_pipeline(pipeline_id)

    def get_pipeline(self, pipeline_id: str) -> PipelineRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id)).first()
        if row is None:
            raise NotFound(f"there is no pipeline with id '{pipeline_id}'")
        return self._pipeline_record(row)

    def find_pipeline(self, project: str, name: str) -> PipelineRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(pipelines).where(pipelines.c.project == project, pipelines.c.name == name)
            ).first()
        return None if row is None else self._pipeline_record(row)

    def list_pipelines(self, project: str | None = None, name: str | None = None) -> list[PipelineRecord]:
        query = select(pipelines).order_by(pipelines.c.project, pipelines.c.name)
        if project is not None:
            query = query.where(pipelines.c.project == project)
        if name is not None:
            query = query.where(pipelines.c.name == name)
        with self.engine.connect() as conn:
            return [self._pipeline_record(row) for row in conn.execute(query)]

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
            row = conn.execute(select(pipelines.c.project, pipelines.c.name).where(pipelines.c.id == pipeline_id))
            found = row.first()
            if found is None:
                raise NotFound(f"there is no pipeline with id '{pipeline_id}'")
            linking = sorted(
                other.name
                for other in conn.execute(
                    select(pipelines.c.name, pipelines.c.rollback_targets).where(pipelines.c.project == found.project)
                )
                if found.name in other.rollback_targets and other.name != found.name
            )
            if linking:
                raise Conflict(
                    f"pipeline '{found.name}' is the rollback of {', '.join(repr(name) for name in linking)}; "
                    "remove those links first"
                )
            conn.execute(pipelines.delete().where(pipelines.c.id == pipeline_id))

    # -- executions

    def create_execution(
        self,
        record: PipelineRecord,
        input: Mapping[str, Any],
        comments: str,
        requested_by: str,
    ) -> Execution:
        """Record a new execution with a task run per task; RUNNING, or QUEUED when at the concurrency limit."""
        with self.engine.begin() as conn:
            execution_id = self._insert_execution(
                conn, record, input, comments, requested_by=requested_by, rollback_of=None
            )
        return self.get_execution(execution_id)

    def start_rollback(
        self,
        parent_id: str,
        record: PipelineRecord,
        input: Mapping[str, Any],
        comments: str,
        status_message: str,
    ) -> Execution | None:
        """Move a running execution to ROLLING_BACK and record its rollback execution, in one transaction.

        Returns None, recording nothing, when the parent is no longer running (another failure got there
        first).
        """
        try:
            with self.engine.begin() as conn:
                parent = conn.execute(select(executions.c.requested_by).where(executions.c.id == parent_id)).first()
                if parent is None:
                    return None
                child_id = self._insert_execution(
                    conn, record, input, comments, requested_by=parent.requested_by, rollback_of=parent_id
                )
                moved = self._transition(
                    conn, parent_id, ExecutionStatus.ROLLING_BACK, status_message, rollback_execution_id=child_id
                )
                if not moved:
                    raise _RaceLost
        except _RaceLost:
            return None
        return self.get_execution(child_id)

    def _insert_execution(
        self,
        conn: Connection,
        record: PipelineRecord,
        input: Mapping[str, Any],
        comments: str,
        *,
        requested_by: str,
        rollback_of: str | None,
    ) -> str:
        pipeline = record.pipeline
        # The counter UPDATE also locks the pipeline row, so concurrent triggers count active runs one by one.
        index = conn.execute(
            update(pipelines)
            .where(pipelines.c.id == record.id)
            .values(execution_count=pipelines.c.execution_count + 1)
            .returning(pipelines.c.execution_count)
        ).scalar_one_or_none()
        if index is None:
            raise NotFound(f"pipeline '{pipeline.name}' no longer exists")
        active = conn.execute(
            select(func.count())
            .select_from(executions)
            .where(executions.c.pipeline_id == record.id, executions.c.status.in_(ACTIVE))
        ).scalar_one()
        # A rollback never waits in a queue: putting the environment back comes first.
        running = rollback_of is not None or active < pipeline.concurrency
        stamp = now()
        execution_id = new_id()
        conn.execute(
            executions.insert().values(
                id=execution_id,
                pipeline_id=record.id,
                pipeline_name=pipeline.name,
                project=pipeline.project,
                index=index,
                status=ExecutionStatus.RUNNING if running else ExecutionStatus.QUEUED,
                status_message=""
                if running
                else f"waiting: {active} executions running (concurrency {pipeline.concurrency})",
                comments=comments,
                input=dict(input),
                output={},
                document=to_document(pipeline),
                rollback=rollback_of is not None,
                rollback_of=rollback_of,
                requested_by=requested_by,
                created_at=stamp,
                started_at=stamp if running else None,
                updated_at=stamp,
            )
        )
        conn.execute(
            task_runs.insert(),
            [
                {
                    "id": new_id(),
                    "execution_id": execution_id,
                    "stage": stage.name,
                    "name": task.name,
                    "type": task.type,
                    "position": position,
                    "status": RunStatus.NOT_STARTED,
                    "status_message": "",
                    "state": {},
                    "attempt": 0,
                    "updated_at": stamp,
                }
                for position, (_, _, task, stage) in enumerate(pipeline.ordered_tasks())
            ],
        )
        return execution_id

    def get_execution(self, execution_id: str) -> Execution:
        with self.engine.connect() as conn:
            row = conn.execute(select(*_EXECUTION_COLUMNS).where(executions.c.id == execution_id)).first()
        if row is None:
            raise NotFound(f"there is no execution with id '{execution_id}'")
        return _execution(row)

    def list_executions(
        self,
        pipeline: str | None = None,
        status: Iterable[ExecutionStatus] | None = None,
        rollback: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Execution]:
        """Executions, newest first; `pipeline` is a pipeline id or name."""
        query = select(*_EXECUTION_COLUMNS).order_by(executions.c.created_at.desc(), executions.c.id)
        if pipeline is not None:
            query = query.where((executions.c.pipeline_id == pipeline) | (executions.c.pipeline_name == pipeline))
        if status is not None:
            query = query.where(executions.c.status.in_([str(item) for item in status]))
        if rollback is not None:
            query = query.where(executions.c.rollback == rollback)
        with self.engine.connect() as conn:
            return [_execution(row) for row in conn.execute(query.limit(limit).offset(offset))]

    def task_runs(self, execution_id: str) -> list[TaskRun]:
        with self.engine.connect() as conn:
            return self._task_runs(conn, execution_id)

    def _task_runs(self, conn: Connection, execution_id: str) -> list[TaskRun]:
        rows = conn.execute(
            select(task_runs).where(task_runs.c.execution_id == execution_id).order_by(task_runs.c.position)
        )
        return [_task_run(row) for row in rows]

    def load_state(self, execution_id: str) -> ExecutionState:
        """An execution with its pipeline snapshot and all its task runs."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*_EXECUTION_COLUMNS).where(executions.c.id == execution_id)).first()
            if row is None:
                raise NotFound(f"there is no execution with id '{execution_id}'")
            runs = self._task_runs(conn, execution_id)
            pipeline = self._snapshot(conn, execution_id)
        return ExecutionState(_execution(row), pipeline, {run.key: run for run in runs})

    def _snapshot(self, conn: Connection, execution_id: str) -> Pipeline:
        # Snapshots never change, so each process parses one once.
        with self._lock:
            cached = self._pipelines.get(execution_id)
            if cached is not None:
                self._pipelines.move_to_end(execution_id)
                return cached
        document = conn.execute(select(executions.c.document).where(executions.c.id == execution_id)).scalar_one()
        pipeline = load_pipeline(document, targets=None)
        with self._lock:
            self._pipelines[execution_id] = pipeline
            if len(self._pipelines) > _CACHE_SIZE:
                self._pipelines.popitem(last=False)
        return pipeline

    def transition(self, execution_id: str, new: ExecutionStatus, message: str = "", **values: Any) -> bool:
        """Move an execution to `new` if the transition table allows it from where it stands now."""
        with self.engine.begin() as conn:
            return self._transition(conn, execution_id, new, message, **values)

    def _transition(
        self, conn: Connection, execution_id: str, new: ExecutionStatus, message: str, **values: Any
    ) -> bool:
        stamp = now()
        if new.is_terminal:
            values["finished_at"] = stamp
        if new is ExecutionStatus.RUNNING:
            values.setdefault("started_at", stamp)
        result = conn.execute(
            executions.update()
            .where(executions.c.id == execution_id, executions.c.status.in_(predecessors(EXECUTION_ALLOWED, new)))
            .values(status=new, status_message=message, updated_at=stamp, **values)
        )
        return result.rowcount == 1

    def queued_executions(self, pipeline_id: str) -> list[str]:
        """Ids of a pipeline's QUEUED executions, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(executions.c.id)
                .where(executions.c.pipeline_id == pipeline_id, executions.c.status == ExecutionStatus.QUEUED)
                .order_by(executions.c.created_at, executions.c.index)
            )
            return [row.id for row in rows]

    def promote_queued(self, pipeline_id: str) -> list[str]:
        """Move a pipeline's oldest QUEUED executions to RUNNING while its concurrency allows; their ids."""
        with self.engine.begin() as conn:
            found = conn.execute(
                select(pipelines.c.concurrency).where(pipelines.c.id == pipeline_id).with_for_update()
            ).first()
            if found is None:
                return []
            active = conn.execute(
                select(func.count())
                .select_from(executions)
                .where(executions.c.pipeline_id == pipeline_id, executions.c.status.in_(ACTIVE))
            ).scalar_one()
            waiting = conn.execute(
                select(executions.c.id)
                .where(executions.c.pipeline_id == pipeline_id, executions.c.status == ExecutionStatus.QUEUED)
                .order_by(executions.c.index)
                .limit(max(found.concurrency - active, 0))
            )
            ids = [row.id for row in waiting]
            return [
                execution_id
                for execution_id in ids
                if self._transition(conn, execution_id, ExecutionStatus.RUNNING, "")
            ]

    # -- task runs

    def queue_task_runs(self, execution_id: str, keys: Iterable[TaskKey]) -> list[TaskRun]:
        """Move NOT_STARTED task runs to QUEUED with their next attempt; the runs this call moved."""
        moved: list[TaskRun] = []
        with self.engine.begin() as conn:
            for stage, name in keys:
                row = conn.execute(
                    update(task_runs)
                    .where(
                        task_runs.c.execution_id == execution_id,
                        task_runs.c.stage == stage,
                        task_runs.c.name == name,
                        task_runs.c.status == RunStatus.NOT_STARTED,
                    )
                    .values(status=RunStatus.QUEUED, attempt=task_runs.c.attempt + 1, updated_at=now())
                    .returning(*task_runs.c)
                ).first()
                if row is not None:
                    moved.append(_task_run(row))
        return moved

    def settle_task_runs(self, execution_id: str, settled: Iterable[tuple[TaskKey, str]], new: RunStatus) -> int:
        """Move NOT_STARTED task runs straight to SKIPPED or FAILED (a preCondition decided); how many moved."""
        count = 0
        stamp = now()
        with self.engine.begin() as conn:
            for (stage, name), message in settled:
                count += conn.execute(
                    update(task_runs)
                    .where(
                        task_runs.c.execution_id == execution_id,
                        task_runs.c.stage == stage,
                        task_runs.c.name == name,
                        task_runs.c.status == RunStatus.NOT_STARTED,
                    )
                    .values(status=new, status_message=message, finished_at=stamp, updated_at=stamp)
                ).rowcount
        return count

    def claim_task_run(self, task_run_id: str, attempt: int) -> TaskRun | None:
        """Take a QUEUED task run for this attempt (QUEUED -> RUNNING); None if another worker has it."""
        stamp = now()
        with self.engine.begin() as conn:
            row = conn.execute(
                update(task_runs)
                .where(
                    task_runs.c.id == task_run_id,
                    task_runs.c.status == RunStatus.QUEUED,
                    task_runs.c.attempt == attempt,
                )
                .values(
                    status=RunStatus.RUNNING,
                    started_at=func.coalesce(task_runs.c.started_at, stamp),
                    updated_at=stamp,
                )
                .returning(*task_runs.c)
            ).first()
        return None if row is None else _task_run(row)

    def get_task_run(self, task_run_id: str) -> TaskRun:
        with self.engine.connect() as conn:
            row = conn.execute(select(task_runs).where(task_runs.c.id == task_run_id)).first()
        if row is None:
            raise NotFound(f"there is no task run with id '{task_run_id}'")
        return _task_run(row)

    def finish_task_run(
        self,
        task_run_id: str,
        new: RunStatus,
        message: str = "",
        output: Mapping[str, Any] | None = None,
        input: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a task run's end (COMPLETED, FAILED or CANCELED) if it is still open."""
        values: dict[str, Any] = {"status": new, "status_message": message, "finished_at": now(), "updated_at": now()}
        if output is not None:
            values["output"] = dict(output)
        if input is not None:
            values["input"] = dict(input)
        with self.engine.begin() as conn:
            result = conn.execute(
                task_runs.update()
                .where(task_runs.c.id == task_run_id, task_runs.c.status.in_(predecessors(RUN_ALLOWED, new)))
                .values(**values)
            )
        return result.rowcount == 1

    def requeue_task_run(
        self, task_run_id: str, attempt: int, state: Mapping[str, Any], message: str, input: Mapping[str, Any]
    ) -> bool:
        """Put a RUNNING task run back in QUEUED for its next attempt, keeping its executor state."""
        with self.engine.begin() as conn:
            result = conn.execute(
                task_runs.update()
                .where(
                    task_runs.c.id == task_run_id,
                    task_runs.c.status == RunStatus.RUNNING,
                    task_runs.c.attempt == attempt,
                )
                .values(
                    status=RunStatus.QUEUED,
                    attempt=attempt + 1,
                    state=dict(state),
                    status_message=message,
                    input=dict(input),
                    updated_at=now(),
                )
            )
        return result.rowcount == 1
