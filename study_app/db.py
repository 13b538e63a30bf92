"""The database handle and the ``init-db`` command."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import with_appcontext
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create the database tables (safe to run again: existing tables are kept)."""
    # Imported for their side effect of registering the tables on the metadata.
    from study_app import models  # noqa: F401

    db.create_all()
    click.echo(f"initialised {db.engine.url.render_as_string(hide_password=True)}")


def init_app(app: Flask) -> None:
    db.init_app(app)
    app.cli.add_command(init_db_command)
