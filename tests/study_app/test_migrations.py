"""Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import inspect

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
        assert ("idempotency_key",) in uniques
