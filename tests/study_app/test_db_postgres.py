"""The same models on a real PostgreSQL server (the production database)."""

from __future__ import annotations

import psycopg
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from study_app import db as study_db
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


def test_a_connection_killed_while_idle_is_replaced_not_answered_with_503(
    pg_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL restarted (or a firewall dropped the connection) while the pool held it:
    the next request gets a fresh connection, not a 503. Connections in steady use are
    not pinged (a round trip per request: issue 31); idle ones are."""
    monkeypatch.setattr(study_db, "PING_AFTER_IDLE_S", 0.0)
    client = pg_app.test_client()
    assert client.get("/api/health").status_code == 200  # the pool now holds a connection
    with pg_app.app_context():
        pooled = db.engine.pool.checkedin()
        assert pooled >= 1
        with psycopg.connect(
            db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
        ) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= pooled
    response = client.get("/api/health")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["database"] == "postgresql"
