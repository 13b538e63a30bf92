"""``study-app``: the Flask app's command line (``flask --app study_app`` works the same)."""

from __future__ import annotations

import click
from flask.cli import FlaskGroup

from artifact_schemas.version import package_version
from study_app.app import UnsafeConfig, create_app


@click.group(
    cls=FlaskGroup,
    create_app=create_app,
    add_version_option=False,
    help="Run and administer the listening-study web app. The database is DATABASE_URL "
    "(e.g. postgresql://user@host/db) or, by default, a SQLite file in the instance folder.\n\n"
    "First time: 'study-app init-db', 'study-app import studies/S', then 'study-app serve'.",
)
@click.version_option(package_version(), prog_name="music-concepts", message="%(prog)s %(version)s")
def cli() -> None:
    pass


def main() -> None:
    try:
        cli()
    except UnsafeConfig as exc:  # raised while Flask's CLI builds the app: no traceback
        raise SystemExit(f"study-app: {exc}") from None
