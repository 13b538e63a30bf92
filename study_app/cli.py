"""``study-app``: the Flask app's command line (``flask --app study_app`` works the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
@click.version_option(package_version(), prog_name="music-concepts", message="%(prog)s %(version)s")
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
    from study_app.participant import PROLIFIC_PLACEHOLDERS

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
    from sqlalchemy import select
    from werkzeug.serving import run_simple

    from study_app.db import db
    from study_app.models import Study

    app = ctx.ensure_object(ScriptInfo).load_app()
    if app.config["SECRET_KEY"] == "dev":
        raise click.UsageError(
            "SECRET_KEY=dev is the well-known development key: anyone could forge a login cookie "
            "with it. Unset SECRET_KEY (a random key is then kept in the instance folder) or set "
            "a long random value."
        )
    base = f"http://{host}:{port}"
    # The app context is closed before serving: request threads open their own.
    with app.app_context():
        slugs = db.session.scalars(select(Study.slug).order_by(Study.slug)).all()
    for slug in slugs:
        click.echo(f"participant entry ({slug}): {base}/s/{slug}")
    click.echo("press Ctrl-C to stop")
    # run_simple, not app.run(): Flask refuses app.run() inside its own CLI.
    run_simple(host, port, app, threaded=True, use_reloader=False)


def _get_study(slug: str) -> Any:
    from sqlalchemy import select

    from study_app.db import db
    from study_app.models import Study

    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        known = ", ".join(db.session.scalars(select(Study.slug))) or "none"
        raise click.BadParameter(f"no study '{slug}' (imported studies: {known})", param_hint="STUDY")
    return study


@click.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (for scripts).")
@with_appcontext
def create_admin_command(username: str, password_stdin: bool) -> None:
    """Create a researcher account for /admin (or reset its password).

    Example: study-app create-admin alice
    """
    import sys

    from sqlalchemy import select

    from study_app.admin import hash_password
    from study_app.db import db
    from study_app.models import Admin

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 10:
        raise click.BadParameter("use at least 10 characters", param_hint="password")
    admin = db.session.scalar(select(Admin).where(Admin.username == username))
    if admin is None:
        db.session.add(Admin(username=username, password_hash=hash_password(password)))
        verb = "created"
    else:
        admin.password_hash, admin.failed_logins, admin.locked_until = hash_password(password), 0, None
        admin.session_version += 1  # a new password logs out every old cookie
        verb = "updated"
    db.session.commit()
    click.echo(f"{verb} admin '{username}'")


@click.command("export")
@click.argument("study")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File to write.")
@click.option(
    "--include-prolific-ids",
    is_flag=True,
    help="Fill prolific_pid (only stored with import --store-prolific-ids).",
)
@with_appcontext
def export_command(study: str, fmt: str, out: Path, include_prolific_ids: bool) -> None:
    """Export STUDY's responses, one row per response (docs/export.md).

    Example: study-app export demo --format parquet --out exports/demo.parquet
    """
    from study_app.export import export_responses

    if out.suffix.lower() != f".{fmt}":
        out = out.with_suffix(f".{fmt}")
    n = export_responses(_get_study(study), out, include_prolific_ids=include_prolific_ids)
    click.echo(f"wrote {n} responses to {out}")


@click.command("status")
@click.argument("study")
@with_appcontext
def status_command(study: str) -> None:
    """Show STUDY's status and sessions per list.

    Example: study-app status demo
    """
    from study_app.monitor import study_stats

    stats = study_stats(_get_study(study))
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
        from study_app.db import db

        row = _get_study(study)
        row.status = status
        db.session.commit()
        click.echo(f"{row.slug}: {status}")

    return command


@click.command("sessions")
@click.argument("study")
@click.option("--abandoned", is_flag=True, required=True, help="List sessions idle past SESSION_TIMEOUT_S.")
@click.option("--release", is_flag=True, help="Mark them abandoned (frees their list slots for good).")
@with_appcontext
def sessions_command(study: str, abandoned: bool, release: bool) -> None:
    """List (and with --release, close) sessions nobody has touched for SESSION_TIMEOUT_S.

    Example: study-app sessions demo --abandoned --release
    """
    from sqlalchemy import select

    from study_app.db import db
    from study_app.models import ACTIVE, StudySession
    from study_app.monitor import release_abandoned, stale_before

    row = _get_study(study)
    if release:
        released = release_abandoned(row)
        click.echo(f"released {len(released)} abandoned sessions")
        return
    idle = db.session.scalars(
        select(StudySession).where(
            StudySession.study_id == row.id,
            StudySession.status == ACTIVE,
            StudySession.last_seen_at < stale_before(),
        )
    ).all()
    for s in idle:
        where = f"list {s.trial_list.list_key}  at {s.position}/{len(s.trial_order)}"
        click.echo(f"s{s.id}  {where}  last seen {s.last_seen_at}")
    click.echo(f"{len(idle)} abandoned sessions")


@click.command("simulate")
@click.argument("study")
@click.option("--url", required=True, help="Where the study is served, e.g. http://127.0.0.1:5000")
@click.option("--participants", default=10, show_default=True, type=click.IntRange(1))
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 512))
@click.option(
    "--accuracy",
    default=0.7,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Probability of the right answer in label trials (and practice).",
)
@click.option(
    "--steer-accuracy", type=click.FloatRange(0, 1), help="Same for steering trials (default: --accuracy)."
)
@click.option(
    "--fail-screening",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Fraction of bots that fail the headphone check.",
)
@click.option("--chaos", is_flag=True, help="Random reloads, repeated submits, dropped connections, retries.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--pace",
    default=0.0,
    show_default=True,
    type=float,
    help="Seconds waited per second of simulated reaction time (0: answer at once).",
)
@with_appcontext
def simulate_command(
    study: str,
    url: str,
    participants: int,
    concurrency: int,
    accuracy: float,
    steer_accuracy: float | None,
    fail_screening: float,
    chaos: bool,
    seed: int,
    pace: float,
) -> None:
    """Run bot participants against a served study, then check every answer was stored once.

    Uses the app's database (DATABASE_URL, the server's) for the answer key and the
    final count. Prints sent=N stored=N duplicates=0 and exits 1 if they disagree.

    Example: study-app simulate demo --url http://127.0.0.1:5000 --participants 50 --concurrency 16 --chaos
    """
    from study_app.db import db
    from study_app.packages import package_view
    from study_app.simulate import BotConfig, run_bots

    row = _get_study(study)
    view = package_view(row)
    slug = row.slug
    # End this process's transaction before the bots start: on SQLite an open one
    # would hold the write lock the server needs.
    db.session.rollback()
    cfg = BotConfig(participants, concurrency, accuracy, steer_accuracy, fail_screening, chaos, seed, pace)
    results = run_bots(url.rstrip("/"), slug, view.manifest, view.key, cfg)
    sent = set().union(*(r.sent for r in results))
    stored, duplicates = _count_stored(sent)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    click.echo("bots: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    if chaos:
        click.echo(
            f"chaos: {sum(r.reloads for r in results)} reloads, {sum(r.dropped for r in results)} dropped "
            f"connections, {sum(r.duplicates_sent for r in results)} repeated submits"
        )
    click.echo(f"sent={len(sent)} stored={stored} duplicates={duplicates}")
    if stored != len(sent) or duplicates:
        raise SystemExit(1)


def _count_stored(keys: set[str]) -> tuple[int, int]:
    """Responses stored for these idempotency keys, and (session, trial, attempt) stored twice."""
    from sqlalchemy import func, select

    from study_app.db import db
    from study_app.models import Response

    stored = 0
    sessions: set[int] = set()
    ordered = sorted(keys)
    for i in range(0, len(ordered), 500):
        rows = db.session.execute(
            select(Response.session_id).where(Response.idempotency_key.in_(ordered[i : i + 500]))
        ).all()
        stored += len(rows)
        sessions.update(r[0] for r in rows)
    groups = (
        select(Response.session_id)
        .where(Response.session_id.in_(sessions))
        .group_by(Response.session_id, Response.trial_id, Response.attempt)
        .having(func.count(Response.id) > 1)
        .subquery()
    )
    duplicates = db.session.scalar(select(func.count()).select_from(groups)) or 0
    return stored, duplicates


@click.command("forget")
@click.argument("study")
@click.option(
    "--prolific-pid", help="The participant's Prolific id (hashed with the study's salt to find them)."
)
@click.option("--participant", "pid_hash", help="The participant column of an export (the salted hash).")
@with_appcontext
def forget_command(study: str, prolific_pid: str | None, pid_hash: str | None) -> None:
    """Delete everything stored about one participant of STUDY (a data-deletion request).

    Removes their responses, events, sessions and participant record, in one transaction.

    Example: study-app forget demo --prolific-pid 5f1c0e8a9b
    """
    from sqlalchemy import delete, func, select

    from study_app.db import db
    from study_app.models import Event, Participant, Response, StudySession
    from study_app.sessions import pid_hash as hash_pid

    row = _get_study(study)
    if (prolific_pid is None) == (pid_hash is None):
        raise click.UsageError("give exactly one of --prolific-pid and --participant")
    digest = hash_pid(row, prolific_pid) if prolific_pid is not None else pid_hash
    assert digest is not None  # exactly one of the two was given
    participant = db.session.scalar(
        select(Participant).where(Participant.study_id == row.id, Participant.pid_hash == digest)
    )
    # Someone who only declined has no participant row, just a 'decline' event naming them.
    declined = (
        Event.study_id == row.id,
        Event.session_id.is_(None),
        Event.kind == "decline",
        Event.data["participant"].as_string() == digest,
    )
    n_declines = db.session.scalar(select(func.count(Event.id)).where(*declined)) or 0
    db.session.execute(delete(Event).where(*declined))
    if participant is None:
        if not n_declines:
            raise click.ClickException(f"no such participant in study '{row.slug}'")
        db.session.commit()
        click.echo(f"deleted {n_declines} decline record(s) of {digest[:12]}... from '{row.slug}'")
        return
    sessions = select(StudySession.id).where(StudySession.participant_id == participant.id)
    n_responses = db.session.scalar(select(func.count(Response.id)).where(Response.session_id.in_(sessions)))
    db.session.execute(delete(Response).where(Response.session_id.in_(sessions)))
    db.session.execute(delete(Event).where(Event.session_id.in_(sessions)))
    db.session.execute(delete(StudySession).where(StudySession.participant_id == participant.id))
    db.session.delete(participant)
    db.session.commit()
    click.echo(
        f"deleted participant {participant.pid_hash[:12]}... and {n_responses} responses from '{row.slug}'"
    )


def register_commands(app: Flask) -> None:
    from study_app.cli_prolific import prolific_command

    for command in (
        import_command,
        serve_command,
        create_admin_command,
        export_command,
        status_command,
        prolific_command,
        sessions_command,
        simulate_command,
        forget_command,
        *(_lifecycle(n, s) for n, s in (("open", "open"), ("pause", "paused"), ("close", "closed"))),
    ):
        app.cli.add_command(command)


def main() -> None:
    cli()
