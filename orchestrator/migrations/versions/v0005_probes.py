"""Endpoint probes: when each endpoint last answered with its credentials, for the pre-flight rollback check; and
the audit trail's note, which records a trigger forced past that check.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


PROBE_COLUMNS = (
    ("probed_at", sa.DateTime(timezone=True)),
    ("probe_ok", sa.Boolean()),
    ("probe_message", sa.Text()),
)


def upgrade() -> None:
    # Plain ALTERs on SQLite too: nullable columns need no table copy.
    for name, kind in PROBE_COLUMNS:
        op.add_column("endpoints", sa.Column(name, kind, nullable=True))
    op.add_column("audit", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit", "note")
    for name, _ in reversed(PROBE_COLUMNS):
        op.drop_column("endpoints", name)
