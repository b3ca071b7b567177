"""Sealed task input: a task run records its bound input with secrets masked, and keeps the full one sealed.

When a task is queued its bindings are resolved (`inputs.py`); what comes out may hold the values of secret
variables, a Kubernetes Secret's data or a credential header. The task run's `input` and `bindings` columns, which
the API shows, get the masked copy (`redaction.py`); the full ones go into `sealed_input`, encrypted by the
vault, with the secret values they hold, so that the worker runs the task as written and masks those values out
of what it records. Without a vault key nothing can be sealed: the run keeps its input as bound, and the API
still masks it when it shows it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator.errors import BadRequest, ConfigurationError
from orchestrator.inputs import BoundTask
from orchestrator.redaction import NO_SECRETS, Secrets, redact
from orchestrator.vault import Vault

INPUT, BINDINGS, SECRETS = "input", "bindings", "secrets"


@dataclass(frozen=True)
class RunInput:
    """What a worker runs a task with: its full input and bindings, and the secret values to mask in its output."""

    input: Mapping[str, Any]
    bindings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Secrets = NO_SECRETS


def conceal(task: BoundTask, secrets: Secrets, vault: Vault) -> tuple[BoundTask, str | None]:
    """The task as its run records it (secrets masked) and its full input sealed, or None when nothing was masked
    (or there is no vault key to seal with)."""
    masked = replace(task, input=redact(dict(task.input), secrets), bindings=redact(dict(task.bindings), secrets))
    if masked.input == task.input and masked.bindings == task.bindings:
        return task, None
    used = secrets.present_in([task.input, task.bindings])
    sealed = {
        INPUT: json.dumps(task.input),
        BINDINGS: json.dumps(task.bindings),
        SECRETS: json.dumps(list(used.raw)),
    }
    try:
        return masked, vault.seal(sealed)
    except BadRequest:
        return task, None


def unseal(
    sealed: str | None, recorded: Mapping[str, Any] | None, bindings: Mapping[str, Any], vault: Vault
) -> RunInput:
    """What a task run is run with: its sealed input opened, or the input it recorded when nothing was sealed.

    Raises ConfigurationError when the vault cannot open it (ROLLWAY_SECRET_KEY unset or changed since).
    """
    if not sealed:
        return RunInput(recorded or {}, bindings)
    opened = vault.open(sealed)
    try:
        full, bound, values = (json.loads(opened[name]) for name in (INPUT, BINDINGS, SECRETS))
    except (KeyError, ValueError) as error:
        raise ConfigurationError("the sealed input of this task run cannot be read") from error
    return RunInput(full, bound, Secrets.of(values))
