"""the optional per-trial comment (study.trial_comments), stored with the answer

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null where no comment was written, and on every answer from before this revision.
    op.add_column("response", sa.Column("comment", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("response", "comment")
