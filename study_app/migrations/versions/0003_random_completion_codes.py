"""completion codes drawn at import and kept in the database

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00

Studies imported before keep the codes their key.json holds (the builder derived them
from the seed; they may already be pasted into Prolific). Re-import such a package
with ``--replace`` before it has responses to get codes nobody can compute.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("completion_codes", sa.JSON(), nullable=True))
    study = sa.table(
        "study", sa.column("id"), sa.column("key", sa.JSON()), sa.column("completion_codes", sa.JSON())
    )
    conn = op.get_bind()
    for row_id, key in conn.execute(sa.select(study.c.id, study.c.key)).all():
        key = json.loads(key) if isinstance(key, str) else key
        codes = {k: v for k, v in (key or {}).get("codes", {}).items() if v}
        conn.execute(study.update().where(study.c.id == row_id).values(completion_codes=codes))
    with op.batch_alter_table("study") as batch:
        batch.alter_column("completion_codes", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.drop_column("completion_codes")
