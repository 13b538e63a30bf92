"""``study-app``: the Flask app's command line (``flask --app study_app`` works the same)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from artifact_schemas import ArtifactError
from artifact_schemas.version import package_version
from study_app.app import create_app


@click.group(
    cls=FlaskGroup,
    create_app=create_app,
    add_version_option=False,
    help="Run and administer the listening-study web app. The database is DATABASE_URL "
    "(e.g. postgresql://user@host/db) or, by default, a SQLite file in the instance folder.\n\n"
    "First time: 'study-app init-db', 'study-app import studies/S', then 'study-app serve'.",
)
@click.version_option(package_version(), prog_name="music-concepts")
def cli() -> None:
    pass


@click.command("import")
@click.argument("package", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--replace", is_flag=True, help="Swap in a different package with the same study id (no responses yet)."
)
@click.option(
    "--store-prolific-ids", is_flag=True, help="Also store raw Prolific ids (default: salted hashes only)."
)
@click.option("--draft", is_flag=True, help="Import closed to participants (default: open).")
@with_appcontext
def import_command(package: Path, replace: bool, store_prolific_ids: bool, draft: bool) -> None:
    """Import a study package built by 'stimuli-builder build' (idempotent).

    Example: study-app import studies/demo
    """
    from study_app.packages import ImportRefused, import_package

    try:
        study, changed = import_package(
            package, replace=replace, store_raw_pid=store_prolific_ids, status="draft" if draft else "open"
        )
    except (ImportRefused, ArtifactError) as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "imported" if changed else "already imported (unchanged)"
    click.echo(f"{verb} study '{study.slug}' ({len(study.lists)} lists, status {study.status})")
    click.echo(
        f"participant link: /s/{study.slug}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@with_appcontext
def serve_command(host: str, port: int) -> None:
    """Serve the app on HOST:PORT with a threaded server (for the demo and pilots).

    Production runs gunicorn behind nginx (docs/deploy.md).
    """
    from sqlalchemy import select

    from study_app.db import db
    from study_app.models import Study

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    base = f"http://{host}:{port}"
    for study in db.session.scalars(select(Study).order_by(Study.slug)):
        click.echo(f"participant entry ({study.slug}): {base}/s/{study.slug}")
    app.run(host=host, port=port, threaded=True, use_reloader=False)


def register_commands(app: Flask) -> None:
    app.cli.add_command(import_command)
    app.cli.add_command(serve_command)


def main() -> None:
    cli()
