"""The same models on a real PostgreSQL server (the production database)."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from study_app.db import db
from study_app.models import Study


def test_study_round_trip_on_postgres(pg_app: Flask) -> None:
    title = "Écoute: <script>alert(1)</script> ♪"
    with pg_app.app_context():
        assert db.engine.dialect.name == "postgresql"
        db.session.add(Study(slug="demo", title=title, manifest_sha256="a" * 64))
        db.session.commit()
        db.session.remove()
        stored = db.session.scalars(select(Study)).one()
        assert (stored.slug, stored.title, stored.status) == ("demo", title, "draft")
        assert stored.created_at.tzinfo is not None


def test_unique_slug_enforced_by_postgres(pg_app: Flask) -> None:
    with pg_app.app_context():
        db.session.add(Study(slug="dup", title="a", manifest_sha256="a" * 64))
        db.session.commit()
        db.session.add(Study(slug="dup", title="b", manifest_sha256="b" * 64))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
        else:
            raise AssertionError("a second study with the same slug was stored")
        assert db.session.scalar(select(db.func.count()).select_from(Study)) == 1


def test_health_on_postgres(pg_app: Flask) -> None:
    response = pg_app.test_client().get("/api/health")
    assert response.get_json() == {"status": "ok", "database": "postgresql"}
