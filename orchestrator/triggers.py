"""Webhook triggers: what a new one must hold, the triggers table, and firing one for a delivery.

A trigger names a pipeline of its project and the input to start it with (which may bind the delivery, see
`webhooks.py`); its secret, which signs deliveries, is sealed by the vault and never shown again. Each delivery
id a trigger has started an execution for is kept (`trigger_deliveries`), in the same transaction as that
execution: a repeated delivery, even two at once, answers with the first one's execution and starts nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from orchestrator.engine import Engine as Runner
from orchestrator.engine import bind_input
from orchestrator.errors import BadRequest, Conflict, NotFound, Problem
from orchestrator.execution import Execution, PipelineRecord
from orchestrator.schema import now, trigger_deliveries, triggers
from orchestrator.transaction import Transaction
from orchestrator.vault import Vault
from orchestrator.webhooks import check_input

FIELDS = frozenset({"name", "project", "pipeline", "secret", "input"})
# Names go in the hook's URL: kept to characters that need no escaping there.
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
MIN_SECRET = 16
MAX_SECRET = 1000
MAX_NAME = 200  # of a project or a pipeline, as their columns hold
MAX_DELIVERY = 200
SECRET_KEY = "secret"
REQUESTER_PREFIX = "trigger:"


@dataclass(frozen=True)
class Trigger:
    """A stored trigger, as the API shows it: never its secret."""

    id: str
    name: str
    project: str
    pipeline: str
    input: Mapping[str, Any]
    created_by: str
    created_at: datetime

    @property
    def requester(self) -> str:
        """The `requestBy` of the executions it starts."""
        return REQUESTER_PREFIX + self.name


@dataclass(frozen=True)
class Draft:
    """A new trigger as a request asks for it; `project` None means the caller's own."""

    name: str
    project: str | None
    pipeline: str
    secret: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Fired:
    """What a delivery started: the execution, and whether an earlier identical delivery started it."""

    execution_id: str
    execution: Execution | None
    duplicate: bool


def _name_problems(name: object) -> list[Problem]:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return [Problem("name", "is required: 1 to 100 letters, digits, '.', '_' or '-' (it is part of the hook URL)")]
    return []


def _secret_problems(secret: object) -> list[Problem]:
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
        return [Problem("secret", f"is required: a string of {MIN_SECRET} to {MAX_SECRET} characters")]
    return []


def _text_problems(body: Mapping[str, Any], field: str, required: bool) -> list[Problem]:
    value = body.get(field)
    if value is None and not required:
        return []
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        return [Problem(field, f"{'is required: ' if required else 'must be '}a name of 1 to {MAX_NAME} characters")]
    return []


def draft_from_body(body: Mapping[str, Any]) -> Draft:
    """A new trigger from a request body; raises BadRequest listing every problem with it."""
    problems = _name_problems(body.get("name")) + _secret_problems(body.get("secret"))
    problems += _text_problems(body, "pipeline", required=True) + _text_problems(body, "project", required=False)
    given = {} if body.get("input") is None else body["input"]
    if isinstance(given, dict):
        problems += check_input(given)
    else:
        problems.append(Problem("input", "must be an object of the pipeline's input names and values"))
    if problems:
        raise BadRequest(f"the trigger has {len(problems)} problem(s): " + "; ".join(map(str, problems)), problems)
    return Draft(body["name"], body.get("project"), body["pipeline"], body["secret"], given)


def check_pipeline(draft: Draft, record: PipelineRecord | None, project: str) -> None:
    """Raise BadRequest unless the pipeline exists in the project and takes the trigger's input names."""
    if record is None:
        problem = Problem("pipeline", f"project '{project}' has no pipeline named '{draft.pipeline}'")
        raise BadRequest(str(problem), [problem])
    # Unknown input names and mandatory inputs left out fail every delivery: say so now.
    bind_input(record.pipeline, draft.input)


def delivery_problem(delivery: str | None) -> str | None:
    """What is wrong with a delivery id, or None."""
    if delivery is not None and not 0 < len(delivery) <= MAX_DELIVERY:
        return f"the delivery id must be 1 to {MAX_DELIVERY} characters"
    return None


def _trigger(row: Any) -> Trigger:
    return Trigger(row.id, row.name, row.project, row.pipeline, row.input, row.created_by, row.created_at)


class Triggers:
    """The triggers table and the deliveries each has seen."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault

    def add(self, trigger_id: str, draft: Draft, project: str, created_by: str) -> Trigger:
        """Save a trigger with its secret sealed; Conflict when the name is taken."""
        made = Trigger(trigger_id, draft.name, project, draft.pipeline, draft.input, created_by, now())
        values = {
            "id": made.id,
            "name": made.name,
            "project": made.project,
            "pipeline": made.pipeline,
            "secret": self.vault.seal({SECRET_KEY: draft.secret}),
            "input": made.input,
            "created_by": made.created_by,
            "created_at": made.created_at,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(triggers.insert().values(**values))
        except IntegrityError as error:
            raise Conflict(f"there is already a trigger named '{draft.name}'") from error
        return made

    def list(self, project: str | None = None) -> list[Trigger]:
        query = select(triggers).order_by(triggers.c.project, triggers.c.name)
        if project is not None:
            query = query.where(triggers.c.project == project)
        with self.engine.connect() as conn:
            return [_trigger(row) for row in conn.execute(query)]

    def get(self, trigger_id: str) -> Trigger:
        with self.engine.connect() as conn:
            row = conn.execute(select(triggers).where(triggers.c.id == trigger_id)).first()
        if row is None:
            raise NotFound(f"there is no trigger with id '{trigger_id}'")
        return _trigger(row)

    def delete(self, trigger_id: str) -> None:
        """Delete a trigger; its deliveries go with it, the executions they started stay."""
        with self.engine.begin() as conn:
            conn.execute(trigger_deliveries.delete().where(trigger_deliveries.c.trigger_id == trigger_id))
            if conn.execute(triggers.delete().where(triggers.c.id == trigger_id)).rowcount == 0:
                raise NotFound(f"there is no trigger with id '{trigger_id}'")

    def find(self, name: str) -> tuple[Trigger, str] | None:
        """The trigger of a hook URL with its secret, or None."""
        if not NAME.fullmatch(name):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(triggers).where(triggers.c.name == name)).first()
        return None if row is None else (_trigger(row), self.vault.open(row.secret)[SECRET_KEY])

    def delivered(self, trigger_id: str, delivery: str) -> str | None:
        """The execution an earlier delivery of this id started, or None."""
        query = select(trigger_deliveries.c.execution_id).where(
            trigger_deliveries.c.trigger_id == trigger_id, trigger_deliveries.c.delivery == delivery
        )
        with self.engine.connect() as conn:
            found: str | None = conn.execute(query).scalar_one_or_none()
        return found

    @staticmethod
    def _claim(trigger_id: str, delivery: str, tx: Transaction, execution: Execution) -> None:
        # Inside the execution's transaction: a concurrent twin waits on this key, then fails on it, and its
        # execution is rolled back with it.
        tx.conn.execute(
            trigger_deliveries.insert().values(
                trigger_id=trigger_id, delivery=delivery, execution_id=execution.id, at=now()
            )
        )

    def fire(
        self, runner: Runner, trigger: Trigger, given: Mapping[str, Any], delivery: str | None, comments: str
    ) -> Fired:
        """Start the trigger's pipeline for a delivery, unless this delivery id already started it.

        Raises NotFound when the pipeline is gone, and what `Engine.trigger` raises (PipelineDisabled, InputInvalid).
        """
        if delivery is not None and (earlier := self.delivered(trigger.id, delivery)) is not None:
            return self._earlier(runner, earlier)
        record = runner.store.find_pipeline(trigger.project, trigger.pipeline)
        if record is None:
            raise NotFound(
                f"trigger '{trigger.name}' starts pipeline '{trigger.pipeline}' of project '{trigger.project}', "
                "which no longer exists"
            )
        claim = None if delivery is None else partial(self._claim, trigger.id, delivery)
        try:
            execution = runner.trigger(record, given, comments, trigger.requester, alongside=claim)
        except IntegrityError as error:
            # The same delivery, handled at the same time, committed first (or the trigger was deleted meanwhile).
            earlier = None if delivery is None else self.delivered(trigger.id, delivery)
            if earlier is None:
                raise Conflict(
                    f"trigger '{trigger.name}' changed while this delivery was handled; send it again"
                ) from error
            return self._earlier(runner, earlier)
        return Fired(execution.id, execution, duplicate=False)

    @staticmethod
    def _earlier(runner: Runner, execution_id: str) -> Fired:
        try:
            execution: Execution | None = runner.store.get_execution(execution_id)
        except NotFound:  # deleted with its pipeline since: the delivery is still the one seen
            execution = None
        return Fired(execution_id, execution, duplicate=True)
