"""slider answers (mushra and slider trials): one value per candidate clip

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null on every other trial type, and on every answer from before this revision.
    op.add_column("response", sa.Column("slider_values", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("response", "slider_values")
