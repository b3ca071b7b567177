"""The Secrets of an application's YAML become SECRET project variables; the generated pipelines refer to them.

A template that copied a Secret's `data` into its `Create Secret` task would keep the credential in the clear in
the pipeline document, in every export and in every task run. Instead each value becomes a SECRET variable of
the project, named `<pipelineName>_<secretName>_<key>` (anything but letters, digits, `_` and `-` turned into
`_`), and the task's YAML holds `${var.NAME}` where the value was. `data` values stay base64 as written, so the
YAML a task applies is the one the user gave.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from orchestrator.cdtemplate.manifest import Application, Obj, name_of, namespace_of
from orchestrator.variables import MAX_NAME_LENGTH

SECRET_FIELDS = ("data", "stringData")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class SecretValue:
    """One value of a Secret, as the SECRET variable that holds it."""

    variable: str
    value: str
    description: str


def _part(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_-") or "value"


def variable_name(pipeline: str, secret: str, key: str, taken: set[str]) -> str:
    """A variable name for one Secret value, unique among `taken` (which it joins)."""
    base = "_".join(_part(part) for part in (pipeline, secret, key))
    if not base[0].isalpha() and base[0] != "_":
        base = "_" + base
    base = base[: MAX_NAME_LENGTH - 4]
    name, counter = base, 1
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    taken.add(name)
    return name


def _referenced(secret: Obj, pipeline: str, taken: set[str]) -> tuple[Obj, list[SecretValue]]:
    """A copy of a Secret whose data values are bindings, and the values they bind."""
    copied = copy.deepcopy(secret)
    found: list[SecretValue] = []
    where = f"{namespace_of(secret)}/{name_of(secret)}"
    for field in SECRET_FIELDS:
        values = secret.get(field)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if not isinstance(value, str) or not value:
                continue
            name = variable_name(pipeline, name_of(secret), str(key), taken)
            copied[field][key] = f"${{var.{name}}}"
            found.append(SecretValue(name, value, f"{field}.{key} of Secret {where} (smart CD template '{pipeline}')"))
    return copied, found


def extract(app: Application, pipeline: str) -> tuple[Application, tuple[SecretValue, ...]]:
    """The application with its Secrets' values replaced by `${var...}` bindings, and those values."""
    taken: set[str] = set()
    secrets: list[Obj] = []
    values: list[SecretValue] = []
    for secret in app.secrets:
        referenced, found = _referenced(secret, pipeline, taken)
        secrets.append(referenced)
        values += found
    return replace(app, secrets=tuple(secrets)), tuple(values)


def as_variables(values: tuple[SecretValue, ...]) -> dict[str, tuple[str, str]]:
    """name -> (value, description), as the variables table saves them."""
    return {item.variable: (item.value, item.description) for item in values}
