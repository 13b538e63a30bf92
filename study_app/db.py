"""The database handle, SQLite settings, Alembic migrations and the ``init-db`` command."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import click
from alembic import command
from alembic.config import Config
from flask import Flask
from flask.cli import with_appcontext
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, event
from sqlalchemy.orm import DeclarativeBase

MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Let SQLAlchemy's "begin" hook below issue BEGIN itself (pysqlite's own
    # transaction handling would defer it), and use WAL so readers never block the writer.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock at the start of every transaction, so two
    # concurrent list assignments cannot both read the same counts (SQLite's stand-in
    # for PostgreSQL's SELECT ... FOR UPDATE); waiting is bounded by busy_timeout.
    # The price: a process must never keep a transaction open while it waits on
    # something else (a long CLI command ends its transaction before waiting).
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(revision: str = "head") -> None:
    """Bring the app's database to ``revision`` (inside an app context)."""
    with db.engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database tables (Alembic 'upgrade head'; safe to run again)."""
    upgrade()
    click.echo(f"initialised {db.engine.url.render_as_string(hide_password=True)}")


# SQLAlchemy keeps 5 idle connections per process and closes any more when they come
# back, so a gunicorn worker with 8 threads opened and closed a PostgreSQL connection
# (a server process) every 16 requests under load. The pool keeps one per thread
# instead: gunicorn.conf.py sets DB_POOL_SIZE to its thread count.
DEFAULT_POOL_SIZE = 10


def _engine_options(app: Flask) -> None:
    if not str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        return  # SQLite: one writer at a time whatever the pool holds
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options.setdefault("pool_size", int(os.environ.get("DB_POOL_SIZE", DEFAULT_POOL_SIZE)))
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def init_app(app: Flask) -> None:
    _engine_options(app)
    db.init_app(app)
    app.cli.add_command(init_db_command)
