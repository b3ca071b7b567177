"""Project variables: the values `${var.NAME}` binds, REGULAR in the clear, SECRET and RESTRICTED sealed at rest.

Code Stream's three kinds: a REGULAR variable is shown to whoever reads the project; a SECRET one is never shown
again once saved (the API answers `*****`), and the values are masked wherever Rollway records or shows them
(`redaction.py`); a RESTRICTED one is a secret that only an admin may create, change or delete.

The checks of a request body are pure; `Variables` is the table, over the store's SQLAlchemy engine and vault.
Executions read a project's values inside their own transaction, and only when a binding asks for one
(`ProjectVariables`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from orchestrator.errors import BadRequest, BindingError, Conflict, NotFound, Problem, RollwayError
from orchestrator.redaction import NO_SECRETS, Secrets
from orchestrator.schema import now, variables
from orchestrator.vault import Vault

MAX_NAME_LENGTH = 200  # the width of the name columns
MAX_VALUE_LENGTH = 65_536  # a kubeconfig or a certificate fits
MAX_DESCRIPTION_LENGTH = 2_000
# A name a binding can hold whole: `${var.NAME}` splits on dots and brackets.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
FIELDS = frozenset({"name", "project", "type", "value", "description"})
CHANGEABLE = frozenset({"type", "value", "description"})
SEALED_KEY = "value"


class VariableType(StrEnum):
    """How a variable's value is kept and shown."""

    REGULAR = "REGULAR"
    SECRET = "SECRET"
    RESTRICTED = "RESTRICTED"

    @property
    def is_secret(self) -> bool:
        """Sealed at rest, never shown, masked wherever it would be recorded."""
        return self is not VariableType.REGULAR


@dataclass(frozen=True)
class Variable:
    """A project variable. `value` is in the clear: the value itself, or "" for a secret read without it."""

    id: str
    project: str
    name: str
    type: VariableType
    value: str
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


# -- request bodies (pure)


def _text(body: Mapping[str, Any], name: str, problems: list[Problem], limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem(name, f"must be a string, not {type(value).__name__}"))
        return None
    if len(value) > limit:
        problems.append(Problem(name, f"must be at most {limit} characters, not {len(value)}"))
        return None
    return value


def _type(body: Mapping[str, Any], problems: list[Problem], default: VariableType) -> VariableType:
    given = body.get("type")
    if given is None:
        return default
    if not isinstance(given, str) or given.upper() not in VariableType.__members__:
        problems.append(Problem("type", f"must be one of {', '.join(VariableType)}, not {given!r}"))
        return default
    return VariableType(given.upper())


def name_problem(name: str | None) -> str | None:
    """What is wrong with a variable name, if anything."""
    if not name:
        return "is required"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters"
    if not NAME.match(name):
        return "must start with a letter or '_' and hold only letters, digits, '_' and '-' (it goes in ${var.NAME})"
    return None


def _value_problem(kind: VariableType, value: str | None) -> str | None:
    if value is None:
        return "is required (a string)"
    if kind.is_secret and not value:
        return f"of a {kind} variable must not be empty"
    return None


def variable_from_body(body: Mapping[str, Any], variable_id: str, project: str) -> Variable:
    """Read a new variable from a request body (its project already decided); BadRequest lists every problem."""
    problems = [Problem(name, "is not a known field") for name in sorted(set(body) - FIELDS)]
    name = _text(body, "name", problems, MAX_NAME_LENGTH)
    kind = _type(body, problems, VariableType.REGULAR)
    value = _text(body, "value", problems, MAX_VALUE_LENGTH)
    description = _text(body, "description", problems, MAX_DESCRIPTION_LENGTH) or ""
    if (problem := name_problem(name)) and not any(item.path == "name" for item in problems):
        problems.append(Problem("name", problem))
    if (problem := _value_problem(kind, value)) and not any(item.path == "value" for item in problems):
        problems.append(Problem("value", problem))
    if problems:
        raise BadRequest(f"the variable has {len(problems)} problem(s)", problems)
    return Variable(variable_id, project, str(name), kind, str(value), description)


def changed_variable(current: Variable, changes: Mapping[str, Any]) -> Variable:
    """`current` with a PATCH's changes (type, value, description); BadRequest lists every problem.

    A secret's value that is not given stays as it is (the caller never saw it); `value` is then "". A secret
    made REGULAR needs its value given: its old one is never revealed.
    """
    problems = [
        Problem(name, "cannot be changed (delete the variable and create it anew)" if name in FIELDS else "is unknown")
        for name in sorted(set(changes) - CHANGEABLE)
    ]
    kind = _type(changes, problems, current.type)
    value = _text(changes, "value", problems, MAX_VALUE_LENGTH)
    description = _text(changes, "description", problems, MAX_DESCRIPTION_LENGTH)
    if "value" in changes and (problem := _value_problem(kind, value)):
        problems.append(Problem("value", problem))
    elif current.type.is_secret and not kind.is_secret and value is None:
        problems.append(Problem("value", "is required to make a secret REGULAR: a secret's value is never shown"))
    if problems:
        raise BadRequest(f"the change has {len(problems)} problem(s)", problems)
    return replace(
        current,
        type=kind,
        value=current.value if value is None else value,
        description=current.description if description is None else description,
    )


# -- what executions see


@dataclass(frozen=True)
class ProjectValues:
    """A project's variable values in the clear, and which of them are secrets to mask.

    `unreadable` names secrets whose sealed value could not be opened (ROLLWAY_SECRET_KEY unset or changed), with
    why: binding one fails with that reason rather than as an unknown name.
    """

    values: Mapping[str, str]
    secrets: Secrets = NO_SECRETS
    unreadable: Mapping[str, str] | None = None


class ProjectVariables(Mapping[str, object]):
    """The `variables` of a binding scope: a project's values, read the first time a binding asks for one."""

    def __init__(self, load: Callable[[], ProjectValues]) -> None:
        self._load = load
        self._loaded: ProjectValues | None = None

    def _read(self) -> ProjectValues:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def __getitem__(self, name: str) -> object:
        loaded = self._read()
        if loaded.unreadable and name in loaded.unreadable:
            raise BindingError(f"variable '{name}' cannot be read: {loaded.unreadable[name]}")
        return loaded.values[name]

    def __contains__(self, name: object) -> bool:
        loaded = self._read()
        return name in loaded.values or bool(loaded.unreadable and name in loaded.unreadable)

    def __iter__(self) -> Iterator[str]:
        return iter(self._read().values)

    def __len__(self) -> int:
        return len(self._read().values)

    @property
    def secrets(self) -> Secrets:
        """The secret values to mask: none when no binding read a variable (none can then be in a bound value)."""
        return NO_SECRETS if self._loaded is None else self._loaded.secrets


def project_values(conn: Connection, vault: Vault, project: str) -> ProjectValues:
    """Every variable value of a project, secrets opened, on a connection (an execution's transaction)."""
    rows = conn.execute(
        select(variables.c.name, variables.c.type, variables.c.value).where(variables.c.project == project)
    )
    values: dict[str, str] = {}
    secrets: list[str] = []
    unreadable: dict[str, str] = {}
    for row in rows:
        if not VariableType(row.type).is_secret:
            values[row.name] = row.value
            continue
        try:
            values[row.name] = vault.open(row.value).get(SEALED_KEY, "")
        except RollwayError as error:
            unreadable[row.name] = error.message
            continue
        secrets.append(values[row.name])
    return ProjectValues(values, Secrets.of(secrets), unreadable)


# -- the table


class Variables:
    """The variables table: secret values sealed by the vault on the way in, opened only for executions."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault

    def _stored_value(self, variable: Variable) -> str:
        if not variable.type.is_secret:
            return variable.value
        try:
            return self.vault.seal({SEALED_KEY: variable.value})
        except BadRequest as error:
            raise BadRequest(
                f"a {variable.type} variable cannot be stored: ROLLWAY_SECRET_KEY is not set on the Rollway server",
                [Problem("type", "needs ROLLWAY_SECRET_KEY on the server to seal the value")],
            ) from error

    @staticmethod
    def _variable(row: Any) -> Variable:
        kind = VariableType(row.type)
        value = "" if kind.is_secret else row.value
        return Variable(row.id, row.project, row.name, kind, value, row.description, row.created_at, row.updated_at)

    def add(self, variable: Variable) -> Variable:
        """Save a new variable; Conflict when its project has one of that name."""
        stamp = now()
        values = {
            "id": variable.id,
            "project": variable.project,
            "name": variable.name,
            "type": variable.type.value,
            "value": self._stored_value(variable),
            "description": variable.description,
            "created_at": stamp,
            "updated_at": stamp,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(variables.insert().values(**values))
        except IntegrityError as error:
            raise Conflict(f"project '{variable.project}' already has a variable named '{variable.name}'") from error
        return self.get(variable.id)

    def get(self, variable_id: str) -> Variable:
        """A variable, a secret one without its value."""
        with self.engine.connect() as conn:
            row = conn.execute(select(variables).where(variables.c.id == variable_id)).first()
        if row is None:
            raise NotFound(f"there is no variable with id '{variable_id}'")
        return self._variable(row)

    def list(self, project: str | None = None) -> list[Variable]:
        """Variables by project and name, secret ones without their values."""
        query = select(variables).order_by(variables.c.project, variables.c.name)
        if project is not None:
            query = query.where(variables.c.project == project)
        with self.engine.connect() as conn:
            return [self._variable(row) for row in conn.execute(query)]

    def change(self, current: Variable, changed: Variable, value_given: bool) -> Variable:
        """Save a changed type, value or description; a value not given is kept as it is stored (sealed when a
        REGULAR variable becomes a secret)."""
        with self.engine.begin() as conn:
            row = conn.execute(select(variables).where(variables.c.id == current.id).with_for_update()).first()
            if row is None:
                raise NotFound(f"there is no variable with id '{current.id}'")
            stored = row.value
            if value_given:
                stored = self._stored_value(changed)
            elif changed.type.is_secret and not current.type.is_secret:
                stored = self._stored_value(replace(changed, value=row.value))
            conn.execute(
                variables.update()
                .where(variables.c.id == current.id)
                .values(type=changed.type.value, value=stored, description=changed.description, updated_at=now())
            )
        return self.get(current.id)

    def delete(self, variable_id: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(variables.delete().where(variables.c.id == variable_id)).rowcount == 0:
                raise NotFound(f"there is no variable with id '{variable_id}'")

    def find(self, project: str, name: str) -> Variable | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(variables).where(variables.c.project == project, variables.c.name == name)
            ).first()
        return None if row is None else self._variable(row)

    def exists(self, project: str, name: str) -> bool:
        """Whether a project has a variable of that name (what saving a pipeline checks `${var.NAME}` against)."""
        return self.find(project, name) is not None

    def values(self, project: str) -> ProjectValues:
        """A project's values, secrets opened: what its executions bind."""
        with self.engine.connect() as conn:
            return project_values(conn, self.vault, project)

    def put_secrets(self, project: str, secrets: Mapping[str, tuple[str, str]], new_id: Callable[[], str]) -> None:
        """Save SECRET variables (name -> (value, description)), in one transaction: new ones created, SECRET ones
        of those names given the new value. Conflict when a name is taken by a variable of another type."""
        stamp = now()
        with self.engine.begin() as conn:
            for name, (value, description) in secrets.items():
                sealed = self._stored_value(Variable("", project, name, VariableType.SECRET, value))
                row = conn.execute(
                    select(variables.c.id, variables.c.type).where(
                        variables.c.project == project, variables.c.name == name
                    )
                ).first()
                if row is not None and row.type != VariableType.SECRET:
                    raise Conflict(f"project '{project}' already has a {row.type} variable named '{name}'")
                if row is not None:
                    changes = {"value": sealed, "description": description, "updated_at": stamp}
                    conn.execute(variables.update().where(variables.c.id == row.id).values(**changes))
                    continue
                conn.execute(
                    variables.insert().values(
                        id=new_id(),
                        project=project,
                        name=name,
                        type=VariableType.SECRET.value,
                        value=sealed,
                        description=description,
                        created_at=stamp,
                        updated_at=stamp,
                    )
                )
