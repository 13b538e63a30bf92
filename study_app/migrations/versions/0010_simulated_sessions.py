"""sessions run by study-app simulate are marked, so exports and reports can say so

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions from before this revision cannot be told apart: they read as participants.
    op.add_column(
        "study_session",
        sa.Column("simulated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("study_session", "simulated")
