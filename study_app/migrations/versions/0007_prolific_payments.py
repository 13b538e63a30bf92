"""prolific payments: the Prolific study a study was published as, and each payment made

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("study", sa.Column("prolific", sa.JSON(), nullable=True))
    op.create_table(
        "prolific_payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("submission_id", sa.String(length=128), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("bulk_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["study_session.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_id", "kind"),
    )
    op.create_index(op.f("ix_prolific_payment_study_id"), "prolific_payment", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_prolific_payment_study_id"), table_name="prolific_payment")
    op.drop_table("prolific_payment")
    op.drop_column("study", "prolific")
