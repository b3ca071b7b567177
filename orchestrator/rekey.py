"""Re-sealing everything the vault sealed under the current key (`rollway db rotate-key`).

Sealed values live in four places: endpoint credentials, SECRET and RESTRICTED variable values, webhook trigger
secrets and the full input of task runs whose shown input was masked. All of them are opened and re-sealed
before one short transaction writes them (the key derivation takes a while per value, and a connection must not
be held that long); a row changed meanwhile keeps its newer value. If any value opens under no key, nothing is
written and the error names the row.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Table, select, true

from orchestrator.errors import ConfigurationError
from orchestrator.schema import endpoints, task_runs, triggers, variables
from orchestrator.store import Store
from orchestrator.variables import VariableType


@dataclass(frozen=True)
class SealedColumn:
    """One column of sealed values: its table, the column, and which rows hold a sealed value."""

    what: str
    table: Table
    column: str
    holds: ColumnElement[bool]


SECRET_TYPES = [kind.value for kind in VariableType if kind.is_secret]
SEALED = (
    SealedColumn("endpoint", endpoints, "credentials", endpoints.c.credentials != ""),
    SealedColumn("variable", variables, "value", variables.c.type.in_(SECRET_TYPES)),
    SealedColumn("trigger", triggers, "secret", true()),
    SealedColumn("task run", task_runs, "sealed_input", task_runs.c.sealed_input.is_not(None)),
)


def _read(store: Store, place: SealedColumn) -> dict[str, str]:
    column = place.table.c[place.column]
    with store.engine.connect() as conn:
        rows = conn.execute(select(place.table.c.id, column).where(place.holds, column != ""))
        return {row[0]: row[1] for row in rows}


def reseal_all(store: Store) -> dict[str, int]:
    """Re-seal every sealed value under the store's current key; how many of each kind were."""
    plan: list[tuple[SealedColumn, dict[str, str], dict[str, str]]] = []
    for place in SEALED:
        sealed = _read(store, place)
        resealed = {}
        for row_id, value in sealed.items():
            try:
                resealed[row_id] = store.vault.rotate(value)
            except ConfigurationError as error:
                raise ConfigurationError(f"{place.what} {row_id}: {error.message}; nothing was re-sealed") from error
        plan.append((place, sealed, resealed))
    with store.engine.begin() as conn:
        for place, sealed, resealed in plan:
            table, column = place.table, place.table.c[place.column]
            for row_id, value in resealed.items():
                conn.execute(
                    table.update().where(table.c.id == row_id, column == sealed[row_id]).values({place.column: value})
                )
    return {place.what: len(resealed) for place, _, resealed in plan}
