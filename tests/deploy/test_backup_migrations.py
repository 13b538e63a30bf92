"""Backups restore into a fresh database with every response intact; migrations keep data."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from flask import Flask
from sqlalchemy import create_engine, inspect, text

from artifact_schemas import load_key, load_study
from study_app import create_app
from study_app.db import alembic_config, db
from study_app.simulate import BotConfig, run_bots

ROOT = Path(__file__).resolve().parents[2]
CHECK_SQL = "SELECT idempotency_key, answer, rating, rt_ms, session_id, trial_id FROM response ORDER BY 1"


def _fingerprint(url: str) -> tuple[int, str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = conn.execute(text(CHECK_SQL)).all()
    engine.dispose()
    return len(rows), hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()


def _fill(app: Flask, package: Path, serve: Any) -> None:
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(package)]).exit_code == 0
    with serve(app) as server:
        run_bots(
            server.url,
            "pilot",
            load_study(package / "study.json"),
            load_key(package / "key.json"),
            BotConfig(participants=4, concurrency=2, seed=1),
        )


def _sh(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_sqlite_backup_restores_every_response(
    app: Flask, example_package: Path, serve: Any, tmp_path: Path
) -> None:
    _fill(app, example_package, serve)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    before = _fingerprint(url)
    assert before[0] > 50
    _sh(str(ROOT / "deploy" / "backup.sh"), url, str(tmp_path / "backup.sqlite"))
    restored = f"sqlite:///{tmp_path / 'restored.sqlite'}"
    _sh(str(ROOT / "deploy" / "restore.sh"), str(tmp_path / "backup.sqlite"), restored)
    assert _fingerprint(restored) == before


def test_postgres_backup_restores_every_response(
    pg_app: Flask, example_package: Path, serve: Any, postgres_url: str, tmp_path: Path
) -> None:
    _fill(pg_app, example_package, serve)
    before = _fingerprint(postgres_url)
    assert before[0] > 50
    _sh(str(ROOT / "deploy" / "backup.sh"), postgres_url, str(tmp_path / "backup.dump"))
    fresh = f"mc_restore_{uuid.uuid4().hex[:10]}"
    admin = postgres_url.rsplit("/", 1)[0]
    with psycopg.connect(
        admin.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "{fresh}"')
    try:
        target = f"{admin}/{fresh}"
        _sh(str(ROOT / "deploy" / "restore.sh"), str(tmp_path / "backup.dump"), target)
        assert _fingerprint(target) == before
    finally:
        with psycopg.connect(
            admin.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
        ) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_from_previous_revision_keeps_every_response(
    backend: str, request: Any, example_package: Path, serve: Any, tmp_path: Path
) -> None:
    """A database at revision 0001 (before admin accounts and the stored completion codes),
    with data, upgrades to head keeping every response and giving the study its codes.

    The data is made by today's code, then the schema is taken down to 0001 with the
    migrations' own downgrades (today's models cannot write a 0001 schema directly)."""
    url = (
        f"sqlite:///{tmp_path / 'old.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    try:
        _fill(app, example_package, serve)
        before = _fingerprint(url)
        with app.app_context():
            with db.engine.begin() as conn:
                command.downgrade(alembic_config(conn), "0001")
            db.engine.dispose()
            columns = {c["name"] for c in inspect(db.engine).get_columns("study")}
            assert "admin" not in inspect(db.engine).get_table_names() and "completion_codes" not in columns
            assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0  # upgrade to head
            assert "admin" in inspect(db.engine).get_table_names()
            codes = db.session.execute(text("SELECT completion_codes FROM study")).scalar_one()
        assert _fingerprint(url) == before and before[0] > 50
        codes = json.loads(codes) if isinstance(codes, str) else codes
        assert set(codes) == {"complete", "screened_out", "declined"} and len(set(codes.values())) == 3
    finally:
        if backend == "postgres":
            request.getfixturevalue("drop_tables")(app)
