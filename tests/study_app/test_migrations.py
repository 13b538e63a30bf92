"""Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import func, inspect, select, text

from study_app.db import db


def _diff(app: Flask) -> list[object]:
    with app.app_context(), db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), db.metadata)


def test_sqlite_schema_matches_models(app: Flask) -> None:
    assert _diff(app) == []


def test_postgres_schema_matches_models(pg_app: Flask) -> None:
    assert _diff(pg_app) == []
    with pg_app.app_context():
        uniques = {tuple(u["column_names"]) for u in inspect(db.engine).get_unique_constraints("response")}
        assert ("session_id", "trial_id", "attempt") in uniques
        # Per session since 0008: another session's key is a new key (issue 31.7).
        assert ("session_id", "idempotency_key") in uniques and ("idempotency_key",) not in uniques


def test_0008_keeps_clips_fetched_before_it_as_heard(any_db_participant: Any) -> None:
    """A participant mid-study when the server is upgraded has the clips in the browser's
    cache and will not fetch them again: a row from before 0008 counts as heard, so the
    upgrade does not refuse them for good. Down and up again keeps every answer."""
    from alembic import command

    from study_app.db import alembic_config
    from study_app.models import ClipRequest, Response

    participant = any_db_participant
    app = participant.client.application
    participant.enter(pid="MIG8")
    participant.post_stage("volume")
    trial = participant.trial()
    clip = trial["trial"]["references"][0]
    participant.client.get(clip["url"], headers={"Range": "bytes=0-0"})  # not heard
    assert participant.answer(trial).status_code == 200
    with app.app_context():
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0007")
        db.engine.dispose()
        first_at = db.session.execute(text("SELECT first_at FROM clip_request")).scalars().all()
        db.session.rollback()
        assert len(first_at) >= 1
        assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0  # up to head
        rows = db.session.scalars(select(ClipRequest)).all()
        assert len(rows) == len(first_at) and all(r.heard_at == r.first_at for r in rows)
        assert db.session.scalar(select(func.count()).select_from(Response)) == 1
        db.session.rollback()  # SQLite: end this transaction (it holds the write lock)
    assert _diff(app) == []
