"""``study-app``: the Flask app's command line (``flask --app study_app`` works the same)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

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
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int) -> None:
    """Serve the app on HOST:PORT with a threaded server (for the demo and pilots).

    Production runs gunicorn behind nginx (docs/deploy.md).
    """
    from sqlalchemy import select
    from werkzeug.serving import run_simple

    from study_app.db import db
    from study_app.models import Study

    app = ctx.ensure_object(ScriptInfo).load_app()
    base = f"http://{host}:{port}"
    # The app context is closed before serving: request threads open their own.
    with app.app_context():
        slugs = db.session.scalars(select(Study.slug).order_by(Study.slug)).all()
    for slug in slugs:
        click.echo(f"participant entry ({slug}): {base}/s/{slug}")
    click.echo("press Ctrl-C to stop")
    # run_simple, not app.run(): Flask refuses app.run() inside its own CLI.
    run_simple(host, port, app, threaded=True, use_reloader=False)


def register_commands(app: Flask) -> None:
    app.cli.add_command(import_command)
    app.cli.add_command(serve_command)


def main() -> None:
    cli()
