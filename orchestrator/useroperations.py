"""User operations: what a task run waits for a person to answer before it goes on.

Code Stream's rule for restricted resources: when a non-admin's run is about to start a task that uses a
RESTRICTED variable or a restricted endpoint, the run is held (WAITING, never sent to a worker) and an ACTIVE
user operation of kind RESTRICTED asks an admin of the project. Approved, the run is queued like any other;
rejected, it fails, which rolls back its stage as any failure does; the execution ending cancels it.

A `UserOperation` task is the kind APPROVAL: it never reaches a worker. The engine holds its run with an ACTIVE
operation naming its approvers (only they, or an admin, may answer) and when it expires. Approved, the run
completes with the answer as its output; rejected, expired (the sweep) or superseded by a newer execution's
(`cancelPreviousPendingUserOp`), it fails, so its stage rolls back.

The decisions (what a run is held for, who may answer, what a body asks) are pure; the reads and writes are
functions over a connection (the engine's transaction), and `UserOperations` reads for the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Row, func, select, update

from orchestrator.errors import BadRequest, Conflict, NotFound, Problem
from orchestrator.execution import TaskRun
from orchestrator.fields import read_flag
from orchestrator.pipeline import TaskKey
from orchestrator.schema import endpoints, executions, now, task_runs, user_operations, variables
from orchestrator.tasktypes import EXPIRATION_UNITS, expiration_of
from orchestrator.variables import VariableType

MAX_COMMENTS_LENGTH = 2_000


class OperationKind(StrEnum):
    """What a user operation asks."""

    RESTRICTED = "RESTRICTED"  # an admin's approval of a restricted variable or endpoint
    APPROVAL = "APPROVAL"  # a UserOperation task's approvers


class OperationStatus(StrEnum):
    """Where a user operation stands: ACTIVE until answered, expired, or its execution ends (CANCELED)."""

    ACTIVE = "ACTIVE"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


# `?status=INACTIVE` lists every operation no longer waiting: answered, expired or canceled.
INACTIVE = "INACTIVE"


@dataclass(frozen=True)
class UserOperation:
    """One question to a person, about one task run; `stage`, `task` and `pipeline` name where it waits."""

    id: str
    execution_id: str
    task_run_id: str
    project: str
    kind: OperationKind
    summary: str
    status: OperationStatus
    requested_by: str
    responded_by: str | None
    comments: str
    created_at: datetime
    responded_at: datetime | None
    stage: str = ""
    task: str = ""
    pipeline: str = ""
    execution_index: int = 0
    approvers: tuple[str, ...] = ()
    approver_groups: tuple[str, ...] = ()
    description: str = ""
    expires_at: datetime | None = None

    def output(self) -> dict[str, Any]:
        """What the task it answered outputs (a UserOperation task's `status, respondedBy, comments, respondedAt`)."""
        return {
            "status": self.status.value,
            "respondedBy": self.responded_by,
            "comments": self.comments,
            "respondedAt": None if self.responded_at is None else self.responded_at.isoformat(),
        }


# -- pure decisions


class VariableReads(Mapping[str, object]):
    """A binding scope's variables, noting every name a binding read: what a task uses is what it was bound to."""

    def __init__(self, variables: Mapping[str, object]) -> None:
        self._variables = variables
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> object:
        value = self._variables[name]
        self.names.add(name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._variables

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)


def _quoted(kind: str, names: Iterable[str]) -> str:
    listed = sorted(set(names))
    plural = "s" if len(listed) > 1 else ""
    return f"restricted {kind}{plural} {', '.join(repr(name) for name in listed)}"


def restriction(variable_names: Iterable[str], endpoint_names: Iterable[str]) -> str | None:
    """Why a task of a non-admin's run must wait for an admin, given the restricted variables and endpoints it
    uses; None when it uses none."""
    uses = (("variable", set(variable_names)), ("endpoint", set(endpoint_names)))
    used = [_quoted(kind, names) for kind, names in uses if names]
    if not used:
        return None
    return f"waiting for an admin to approve the use of {' and '.join(used)}"


def answer_refusal(operation: UserOperation, is_admin: bool, name: str) -> str | None:
    """Why this caller (who may run the project's pipelines) may not answer the operation; None when it may.

    An admin may answer any; an APPROVAL also its listed approvers (groups do not exist yet: they grant nothing).
    """
    if is_admin:
        return None
    if operation.kind is OperationKind.RESTRICTED:
        return "only an admin of the project may approve or reject the use of a restricted variable or endpoint"
    if name not in operation.approvers:
        listed = ", ".join(repr(item) for item in operation.approvers) or "nobody"
        return f"only a listed approver ({listed}) or an admin of the project may answer this approval"
    return None


@dataclass(frozen=True)
class Approval:
    """What a UserOperation task's bound input asks: its approvers, what it says, and when it expires."""

    approvers: tuple[str, ...]
    approver_groups: tuple[str, ...]
    summary: str
    description: str
    expiration: float
    unit: str
    cancel_previous: bool

    @property
    def lasts(self) -> timedelta:
        return timedelta(seconds=self.expiration * EXPIRATION_UNITS[self.unit])

    @property
    def waiting(self) -> str:
        """Why its run waits (its message, and the execution's)."""
        who = ", ".join(self.approvers or self.approver_groups)
        return f"waiting for approval by {who}" + (f": {self.summary}" if self.summary else "")

    @property
    def expired_message(self) -> str:
        amount = int(self.expiration) if self.expiration.is_integer() else self.expiration
        return f"expired after {amount} {self.unit}"


def expired_message(task_input: Mapping[str, Any]) -> str:
    """Why an approval's task failed when nobody answered it in time: `expired after N UNIT`."""
    try:
        return approval_of(task_input).expired_message
    except ValueError:
        return "expired before anyone answered it"


def _listed(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [] if value in (None, "") else [value]
    return tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))


def approval_of(task_input: Mapping[str, Any]) -> Approval:
    """The approval a bound UserOperation input asks for; ValueError naming the field a binding made wrong."""
    approvers = _listed(task_input.get("approvers"))
    groups = _listed(task_input.get("approverGroups"))
    if not approvers and not groups:
        raise ValueError("approvers is empty once bound: nobody could approve it")
    expiration, unit = expiration_of(task_input)
    return Approval(
        approvers=approvers,
        approver_groups=groups,
        summary=str(task_input.get("summary") or "").strip(),
        description=str(task_input.get("description") or ""),
        expiration=expiration,
        unit=unit,
        cancel_previous=read_flag("cancelPreviousPendingUserOp", task_input.get("cancelPreviousPendingUserOp")),
    )


def answer_from_body(body: Mapping[str, Any]) -> tuple[bool, str]:
    """(approve?, comments) from `{"action": "approve"|"reject", "comments": "..."}`; BadRequest names each problem."""
    problems = [Problem(name, "is not a known field") for name in sorted(set(body) - {"action", "comments"})]
    action = body.get("action")
    comments = body.get("comments", "")
    if not isinstance(action, str) or action.lower() not in ("approve", "reject"):
        problems.append(Problem("action", f"must be 'approve' or 'reject', not {action!r}"))
    if comments is None:
        comments = ""
    if not isinstance(comments, str):
        problems.append(Problem("comments", f"must be a string, not {type(comments).__name__}"))
    elif len(comments) > MAX_COMMENTS_LENGTH:
        problems.append(Problem("comments", f"must be at most {MAX_COMMENTS_LENGTH} characters"))
    if problems:
        raise BadRequest(f"the answer has {len(problems)} problem(s)", problems)
    return str(action).lower() == "approve", str(comments)


def parse_status(text: str | None) -> frozenset[OperationStatus] | None:
    """The `?status=` filter of a list (INACTIVE: every status but ACTIVE); BadRequest for an unknown one."""
    if not text:
        return None
    if text.upper() == INACTIVE:
        return frozenset(OperationStatus) - {OperationStatus.ACTIVE}
    if text.upper() not in OperationStatus.__members__:
        raise BadRequest(f"unknown status {text!r}; expected one of {', '.join([*OperationStatus, INACTIVE])}")
    return frozenset({OperationStatus(text.upper())})


# -- reads and writes in the engine's transaction

_VIEW = (
    select(
        user_operations,
        task_runs.c.stage,
        task_runs.c.name.label("task"),
        executions.c.pipeline_name,
        executions.c.index.label("execution_index"),
        executions.c.pipeline_id,
    )
    .join(task_runs, task_runs.c.id == user_operations.c.task_run_id)
    .join(executions, executions.c.id == user_operations.c.execution_id)
)


def _operation(row: Row[Any]) -> UserOperation:
    return UserOperation(
        id=row.id,
        execution_id=row.execution_id,
        task_run_id=row.task_run_id,
        project=row.project,
        kind=OperationKind(row.kind),
        summary=row.summary,
        status=OperationStatus(row.status),
        requested_by=row.requested_by,
        responded_by=row.responded_by,
        comments=row.comments,
        created_at=row.created_at,
        responded_at=row.responded_at,
        stage=row.stage,
        task=row.task,
        pipeline=row.pipeline_name,
        execution_index=row.execution_index,
        approvers=tuple(row.approvers or ()),
        approver_groups=tuple(row.approver_groups or ()),
        description=row.description,
        expires_at=row.expires_at,
    )


def restricted_variables(conn: Connection, project: str) -> frozenset[str]:
    """The names of a project's RESTRICTED variables."""
    rows = conn.execute(
        select(variables.c.name).where(variables.c.project == project, variables.c.type == VariableType.RESTRICTED)
    )
    return frozenset(row.name for row in rows)


def restricted_endpoints(conn: Connection, endpoint_ids: Iterable[str]) -> dict[str, str]:
    """Of these endpoints, the restricted ones: id -> name."""
    ids = sorted(set(endpoint_ids))
    if not ids:
        return {}
    rows = conn.execute(select(endpoints.c.id, endpoints.c.name).where(endpoints.c.id.in_(ids), endpoints.c.restricted))
    return {row.id: row.name for row in rows}


def open_operation(
    conn: Connection,
    run: TaskRun,
    kind: OperationKind,
    *,
    summary: str,
    requested_by: str,
    approval: Approval | None = None,
) -> str:
    """Record an ACTIVE user operation for a task run that has just been held (an APPROVAL with its `approval`);
    its id."""
    operation_id = str(uuid.uuid4())
    stamp = now()
    conn.execute(
        user_operations.insert().values(
            id=operation_id,
            execution_id=run.execution_id,
            task_run_id=run.id,
            project=select(executions.c.project).where(executions.c.id == run.execution_id).scalar_subquery(),
            kind=kind.value,
            summary=summary,
            status=OperationStatus.ACTIVE.value,
            requested_by=requested_by,
            responded_by=None,
            comments="",
            created_at=stamp,
            responded_at=None,
            approvers=None if approval is None else list(approval.approvers),
            approver_groups=None if approval is None else list(approval.approver_groups),
            description="" if approval is None else approval.description,
            expires_at=None if approval is None else stamp + approval.lasts,
        )
    )
    return operation_id


def expired(conn: Connection, stamp: datetime, limit: int) -> list[UserOperation]:
    """ACTIVE operations whose time to be answered ran out before `stamp`, oldest first."""
    query = (
        _VIEW.where(
            user_operations.c.status == OperationStatus.ACTIVE,
            user_operations.c.expires_at.is_not(None),
            user_operations.c.expires_at < stamp,
        )
        .order_by(user_operations.c.expires_at)
        .limit(limit)
    )
    return [_operation(row) for row in conn.execute(query)]


def pending_before(conn: Connection, pipeline_id: str, key: TaskKey, execution_id: str) -> list[UserOperation]:
    """The ACTIVE approvals of the same task in the pipeline's other executions (`cancelPreviousPendingUserOp`)."""
    query = _VIEW.where(
        user_operations.c.status == OperationStatus.ACTIVE,
        user_operations.c.kind == OperationKind.APPROVAL,
        executions.c.pipeline_id == pipeline_id,
        user_operations.c.execution_id != execution_id,
        task_runs.c.stage == key[0],
        task_runs.c.name == key[1],
    ).order_by(user_operations.c.created_at)
    return [_operation(row) for row in conn.execute(query)]


def find(conn: Connection, operation_id: str, lock: bool = False) -> UserOperation:
    """A user operation; NotFound when there is none with that id."""
    query = _VIEW.where(user_operations.c.id == operation_id)
    row = conn.execute(query.with_for_update(of=user_operations) if lock else query).first()
    if row is None:
        raise NotFound(f"there is no user operation with id '{operation_id}'")
    return _operation(row)


def settle(
    conn: Connection, operation: UserOperation, new: OperationStatus, *, actor: str, comments: str
) -> UserOperation:
    """Answer an ACTIVE user operation; Conflict (409) when it was answered or canceled already."""
    moved = conn.execute(
        update(user_operations)
        .where(user_operations.c.id == operation.id, user_operations.c.status == OperationStatus.ACTIVE)
        .values(status=new.value, responded_by=actor or None, comments=comments, responded_at=now())
    )
    if moved.rowcount != 1:
        current = find(conn, operation.id)
        raise Conflict(f"user operation '{operation.id}' is {current.status}, not ACTIVE: it cannot be answered")
    return find(conn, operation.id)


def active_count(conn: Connection, execution_id: str) -> int:
    """How many of an execution's user operations still wait for an answer."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(user_operations)
            .where(user_operations.c.execution_id == execution_id, user_operations.c.status == OperationStatus.ACTIVE)
        ).scalar_one()
    )


def cancel_active(conn: Connection, execution_id: str, actor: str) -> None:
    """Cancel an execution's ACTIVE user operations: it ended or rolls back, so nothing is left to answer."""
    conn.execute(
        update(user_operations)
        .where(user_operations.c.execution_id == execution_id, user_operations.c.status == OperationStatus.ACTIVE)
        .values(status=OperationStatus.CANCELED.value, responded_by=actor or None, responded_at=now())
    )


class UserOperations:
    """The user operations table, for the API."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, operation_id: str) -> UserOperation:
        with self.engine.connect() as conn:
            return find(conn, operation_id)

    def list(
        self, project: str | None = None, statuses: Iterable[OperationStatus] | None = None, limit: int = 1000
    ) -> list[UserOperation]:
        """User operations, newest first; `project` None means every project, `statuses` None every status."""
        query = _VIEW.order_by(user_operations.c.created_at.desc(), user_operations.c.id).limit(limit)
        if project is not None:
            query = query.where(user_operations.c.project == project)
        if statuses is not None:
            query = query.where(user_operations.c.status.in_(sorted(statuses)))
        with self.engine.connect() as conn:
            return [_operation(row) for row in conn.execute(query)]
