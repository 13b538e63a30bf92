"""The database handle, SQLite settings, Alembic migrations and the ``init-db`` command."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import click
from alembic import command
from alembic.config import Config
from flask import Flask
from flask.cli import with_appcontext
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
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


# pool_pre_ping pinged PostgreSQL before every request: a round trip and a statement
# that were a sixth of a busy server's, for nothing while a connection is in steady use
# (profile, issue 31). A connection that sat idle longer than this (PostgreSQL restarted,
# a firewall dropped it) is pinged before it is used; one that fails is replaced.
PING_AFTER_IDLE_S = 2.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # record.info belongs to the DBAPI connection: a new one has no idle_since.
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out a new one (SQLAlchemy's
            # documented pessimistic disconnect handling).
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc


def autocommit_request() -> None:
    """Run this request's statements each in its own transaction, on PostgreSQL.

    For a request whose one write is a single statement (the trial fetch), BEGIN and
    COMMIT were two of its four round trips (issue 31). psycopg sets autocommit on the
    client side, and the pool restores it when the connection is returned. Call before
    the request's first statement. SQLite keeps its BEGIN IMMEDIATE (see above).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def init_app(app: Flask) -> None:
    _engine_options(app)
    db.init_app(app)
    if str(app.config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        with app.app_context():
            _ping_idle_connections(db.engine)
    app.cli.add_command(init_db_command)
