"""admin session version (logout and password change end every cookie)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 13:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place, not batch mode (which rebuilds the table on SQLite; see 0003).
    op.add_column("admin", sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("admin", "session_version")
