"""timers and alarms; each turn's action and its outcome

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 00:00:00

Frozen like 0001: value lists are spelled out here, never imported from ``models``.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "timers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("remaining_s", sa.Float(), nullable=True),
        sa.Column("time_of_day", sa.String(5), nullable=True),
        sa.Column("repeat", sa.String(32), nullable=True),
        sa.Column("fired_at", sa.DateTime(), nullable=True),
        sa.Column("late_s", sa.Float(), nullable=True),
        sa.Column("utterance_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_in("kind", "timer", "alarm", "reminder"), name=op.f("ck_timers_kind")),
        sa.CheckConstraint(_in("state", "pending", "paused", "fired", "cancelled"), name=op.f("ck_timers_state")),
        sa.ForeignKeyConstraint(["utterance_id"], ["utterances.id"], ondelete="SET NULL",
                                name=op.f("fk_timers_utterance_id_utterances")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_timers_state"), "timers", ["state"])
    # Nullable columns: SQLite adds them in place, no table rebuild.
    op.add_column("utterances", sa.Column("action", sa.JSON(), nullable=True))
    op.add_column("utterances", sa.Column("action_outcome", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("utterances") as batch:
        batch.drop_column("action_outcome")
        batch.drop_column("action")
    op.drop_index(op.f("ix_timers_state"), table_name="timers")
    op.drop_table("timers")
