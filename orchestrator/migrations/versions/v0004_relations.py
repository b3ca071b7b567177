"""Executions linked to a parent by one relation with a kind: rollback, nested (Pipeline task) or manual rollback.

`parent_id` and `relation` replace the rollback-only `rollback`, `rollback_of` and `rollback_execution_id` (the
rollback a parent started is now its child of relation 'rollback'), and `cause` keeps why an execution is rolling
back, which its status message used to carry behind a "rolling back: " prefix.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# What the status message of a ROLLING_BACK execution started with before `cause` held it.
OLD_PREFIX = "rolling back: "

executions = sa.table(
    "executions",
    sa.column("id", sa.String()),
    sa.column("status", sa.String()),
    sa.column("status_message", sa.Text()),
    sa.column("rollback", sa.Boolean()),
    sa.column("rollback_of", sa.String()),
    sa.column("rollback_execution_id", sa.String()),
    sa.column("parent_id", sa.String()),
    sa.column("relation", sa.String()),
    sa.column("cause", sa.Text()),
)


def upgrade() -> None:
    # Added first (a plain ALTER on SQLite too), so the data can be copied before the old columns go.
    with op.batch_alter_table("executions") as table:
        table.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        table.add_column(sa.Column("relation", sa.String(32), nullable=True))
        table.add_column(sa.Column("cause", sa.Text(), nullable=False, server_default=""))
    c = executions.c
    op.execute(executions.update().where(c.rollback.is_(True)).values(parent_id=c.rollback_of, relation="rollback"))
    # The one place the old prefix is read back: a rollback still running settles its parent with this cause.
    op.execute(
        executions.update()
        .where(c.status == "ROLLING_BACK", c.status_message.startswith(OLD_PREFIX, autoescape=True))
        .values(cause=sa.func.substr(c.status_message, len(OLD_PREFIX) + 1))
    )
    # SQLite copies the table to drop a column with a foreign key: `migrations.upgrade` turns its foreign keys off
    # meanwhile, or dropping the old copy would delete every task run and event with it.
    with op.batch_alter_table("executions") as table:
        table.drop_index("ix_executions_rollback_of")
        table.drop_column("rollback_execution_id")
        table.drop_column("rollback_of")
        table.drop_column("rollback")
        table.create_foreign_key("executions_parent_id_fkey", "executions", ["parent_id"], ["id"], ondelete="SET NULL")
        table.create_index("ix_executions_parent", ["parent_id"])


def downgrade() -> None:
    raise NotImplementedError("Rollway migrates forward only: restore a backup to go back")
