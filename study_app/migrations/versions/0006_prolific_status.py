"""prolific status: each session's submission status on Prolific at the last sync

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place (see 0003): rebuilding study_session on SQLite would cascade to responses.
    op.add_column("study_session", sa.Column("prolific_status", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("study_session", "prolific_status")
