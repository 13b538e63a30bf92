"""listening evidence by the byte: ranges served per clip; idempotency keys per session

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 12:00:00

``clip_request`` records which bytes of a clip were served to a session (``size``,
``served``) and when they first covered the whole file (``heard_at``); an answer is
refused until every clip it needs is heard (issue 31.3). A row written before this
revision recorded only that the session asked for the clip (perhaps one byte of it): it
is taken as heard, so that a participant in the middle of the study when the server is
upgraded, whose browser holds the clips in its cache and will not fetch them again, is
not refused for good.

``response.idempotency_key`` was unique across all sessions, so a key another session
had used came back as that session's answer, marked a duplicate (issue 31.7); it is
unique per session now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_NEW_UNIQUE = "uq_response_session_idempotency_key"
_OLD_UNIQUE = "uq_response_idempotency_key"
# SQLite's constraints from 0001 have no names: batch mode names the reflected ones so.
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _unique_name(columns: list[str]) -> str | None:
    for unique in sa.inspect(op.get_bind()).get_unique_constraints("response"):
        if unique["column_names"] == columns:
            return unique["name"]
    return None


def upgrade() -> None:
    # In place (see 0003): clip_request has no children, but keep to one way of adding columns.
    op.add_column("clip_request", sa.Column("size", sa.BigInteger(), nullable=True))
    op.add_column("clip_request", sa.Column("served", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("clip_request", sa.Column("heard_at", sa.DateTime(timezone=True), nullable=True))
    clip = sa.table("clip_request", sa.column("first_at"), sa.column("heard_at"))
    op.execute(clip.update().values(heard_at=clip.c.first_at))

    # Changing a unique constraint rebuilds the table on SQLite (batch mode). That is safe
    # for response, unlike study or study_session (env.py): no table refers to it.
    old = _unique_name(["idempotency_key"]) or _OLD_UNIQUE
    with op.batch_alter_table("response", naming_convention=_NAMES) as batch:
        batch.drop_constraint(old, type_="unique")
        batch.create_unique_constraint(_NEW_UNIQUE, ["session_id", "idempotency_key"])


def downgrade() -> None:
    # Fails where two sessions used one key, which 0008 allows (the old schema cannot hold them).
    with op.batch_alter_table("response", naming_convention=_NAMES) as batch:
        batch.drop_constraint(_NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(_OLD_UNIQUE, ["idempotency_key"])
    for name in ("heard_at", "served", "size"):
        op.drop_column("clip_request", name)
