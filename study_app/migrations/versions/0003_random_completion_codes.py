"""completion codes drawn at import and kept in the database

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00

Studies imported before keep the codes their key.json holds (the builder derived them
from the seed; they may already be pasted into Prolific). Re-import such a package
with ``--replace`` before it has responses to get codes nobody can compute. A code
the key lacks is drawn at random, as ``study-app import`` does.
"""

from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# As study_app.packages.CODE_ALPHABET (a migration must not change when the code does).
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def upgrade() -> None:
    # A plain ADD COLUMN, never batch mode: on SQLite batch mode copies and drops the study
    # table, and with foreign keys on, the drop cascades to every session and response.
    op.add_column("study", sa.Column("completion_codes", sa.JSON(), nullable=False, server_default="{}"))
    study = sa.table(
        "study", sa.column("id"), sa.column("key", sa.JSON()), sa.column("completion_codes", sa.JSON())
    )
    conn = op.get_bind()
    for row_id, key in conn.execute(sa.select(study.c.id, study.c.key)).all():
        key = json.loads(key) if isinstance(key, str) else key
        codes = {k: v for k, v in ((key or {}).get("codes") or {}).items() if v}
        for name in ("complete", "screened_out", "declined"):
            while not codes.get(name) or list(codes.values()).count(codes[name]) > 1:
                codes[name] = "".join(secrets.choice(_ALPHABET) for _ in range(10))
        conn.execute(study.update().where(study.c.id == row_id).values(completion_codes=codes))


def downgrade() -> None:
    op.drop_column("study", "completion_codes")  # SQLite >= 3.35 drops in place (see upgrade)
