"""listening evidence: when each trial was served and which clips each session fetched

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("study_session", sa.Column("served_trial", sa.String(length=32), nullable=True)),
    ("study_session", sa.Column("served_at", sa.DateTime(timezone=True), nullable=True)),
    ("response", sa.Column("served_at", sa.DateTime(timezone=True), nullable=True)),
    ("response", sa.Column("clips_unfetched", sa.Integer(), nullable=True)),
)


def upgrade() -> None:
    # In place (see 0003): rebuilding study_session on SQLite would cascade to responses.
    for table, column in _COLUMNS:
        op.add_column(table, column)
    op.create_table(
        "clip_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.String(length=64), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["study_session.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "clip_id"),
    )
    op.create_index(op.f("ix_clip_request_session_id"), "clip_request", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_clip_request_session_id"), table_name="clip_request")
    op.drop_table("clip_request")
    for table, column in reversed(_COLUMNS):
        op.drop_column(table, column.name)
