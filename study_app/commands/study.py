"""``study-app`` commands about a study: import it, serve it, open, pause or close it,
see its progress and export its responses; and the admin account."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import ScriptInfo, with_appcontext
from sqlalchemy import select
from werkzeug.serving import run_simple

from artifact_schemas import ArtifactError
from study_app.admin import set_admin_password, set_study_status
from study_app.commands.common import get_study_or_fail
from study_app.db import db
from study_app.export import export_problem_reports, export_responses
from study_app.models import Study
from study_app.monitor import study_stats
from study_app.packages import ImportRefused, import_package
from study_app.participant import PROLIFIC_PLACEHOLDERS


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
    try:
        study, changed = import_package(
            package, replace=replace, store_raw_pid=store_prolific_ids, status="draft" if draft else "open"
        )
    except (ImportRefused, ArtifactError) as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "imported" if changed else "already imported (unchanged)"
    click.echo(f"{verb} study '{study.slug}' ({len(study.lists)} lists, status {study.status})")
    click.echo(f"participant link: /s/{study.slug}?{PROLIFIC_PLACEHOLDERS}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int) -> None:
    """Serve the app on HOST:PORT with a threaded server (for the demo and pilots).

    Production runs gunicorn behind nginx (docs/deploy.md).
    """
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


@click.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (for scripts).")
@with_appcontext
def create_admin_command(username: str, password_stdin: bool) -> None:
    """Create a researcher account for /admin (or reset its password).

    Example: study-app create-admin alice
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        verb = set_admin_password(username, password)
    except ValueError:
        raise click.BadParameter("use at least 10 characters", param_hint="password") from None
    click.echo(f"{verb} admin '{username}'")


@click.command("export")
@click.argument("study")
@click.option(
    "--table",
    type=click.Choice(["responses", "problem_reports"]),
    default="responses",
    show_default=True,
    help="responses: one row per stored answer; problem_reports: one row per 'Problem with the "
    "audio?' report, answered trials or not (docs/export.md).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option(
    "--include-prolific-ids",
    is_flag=True,
    help="Fill prolific_pid (only stored with import --store-prolific-ids; responses only).",
)
@with_appcontext
def export_command(study: str, table: str, fmt: str, out: Path, include_prolific_ids: bool) -> None:
    """Export STUDY's responses, one row per response, or its problem reports (docs/export.md).

    Example: study-app export demo --format parquet --out exports/demo.parquet
    """
    if out.suffix.lower() != f".{fmt}":
        out = out.with_suffix(f".{fmt}")
    if table == "problem_reports":
        if include_prolific_ids:
            raise click.BadParameter(
                "the problem reports carry no Prolific ids", param_hint="--include-prolific-ids"
            )
        n = export_problem_reports(get_study_or_fail(study), out)
        click.echo(f"wrote {n} problem reports to {out}")
        return
    n = export_responses(get_study_or_fail(study), out, include_prolific_ids=include_prolific_ids)
    click.echo(f"wrote {n} responses to {out}")


@click.command("status")
@click.argument("study")
@with_appcontext
def status_command(study: str) -> None:
    """Show STUDY's status and sessions per list.

    Example: study-app status demo
    """
    stats = study_stats(get_study_or_fail(study))
    click.echo(f"{stats['study']}: {stats['status']}")
    click.echo(
        f"{'list':<12}{'target':>8}{'active':>8}{'completed':>11}{'abandoned':>11}{'screened_out':>14}"
    )
    for key, c in stats["lists"].items():
        click.echo(
            f"{key:<12}{c['target']:>8}{c['active']:>8}{c['completed']:>11}{c['abandoned']:>11}{c['screened_out']:>14}"
        )
    t = stats["totals"]
    click.echo(f"declined {t['declined']}, responses {t['responses']}")


def _lifecycle(name: str, status: str) -> click.Command:
    @click.command(name, help=f"Set STUDY's status to '{status}' (participants can start only open studies).")
    @click.argument("study")
    @with_appcontext
    def command(study: str) -> None:
        row = get_study_or_fail(study)
        set_study_status(row, status)
        click.echo(f"{row.slug}: {status}")

    return command


COMMANDS = (
    import_command,
    serve_command,
    create_admin_command,
    export_command,
    status_command,
    *(_lifecycle(n, s) for n, s in (("open", "open"), ("pause", "paused"), ("close", "closed"))),
)
