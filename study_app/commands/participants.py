"""``study-app`` commands about participants: idle sessions, bot runs, data deletion."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import with_appcontext

from artifact_schemas import FieldError, as_flag
from study_app.bot_config import BotConfig, parse_slider_means
from study_app.commands.common import field_option, get_study_or_fail
from study_app.db import db
from study_app.monitor import idle_sessions, release_abandoned, stored_answers
from study_app.packages import package_view
from study_app.privacy import NoSuchParticipant, forget_participant
from study_app.sessions import mark_simulated


@click.command("sessions")
@click.argument("study")
@click.option("--abandoned", is_flag=True, required=True, help="List sessions idle past SESSION_TIMEOUT_S.")
@click.option("--release", is_flag=True, help="Mark them abandoned (frees their list slots for good).")
@with_appcontext
def sessions_command(study: str, abandoned: bool, release: bool) -> None:
    """List (and with --release, close) sessions nobody has touched for SESSION_TIMEOUT_S.

    Example: study-app sessions demo --abandoned --release
    """
    row = get_study_or_fail(study)
    if release:
        released = release_abandoned(row)
        click.echo(f"released {len(released)} abandoned sessions")
        return
    idle = idle_sessions(row)
    for s in idle:
        where = f"list {s.trial_list.list_key}  at {s.position}/{len(s.trial_order)}"
        click.echo(f"s{s.id}  {where}  last seen {s.last_seen_at}")
    click.echo(f"{len(idle)} abandoned sessions")


def _slider_means(ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]) -> dict[str, float]:
    try:
        return parse_slider_means(pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("simulate")
@click.argument("study")
@click.option("--url", required=True, help="Where the study is served, e.g. http://127.0.0.1:5000")
@field_option(BotConfig, "participants")
@field_option(BotConfig, "concurrency")
@field_option(BotConfig, "accuracy")
@field_option(BotConfig, "steer_accuracy", type=float)
@field_option(BotConfig, "fail_screening")
@field_option(BotConfig, "chaos")
@field_option(BotConfig, "seed")
@field_option(BotConfig, "pace")
@field_option(BotConfig, "listen")
@click.option(
    "--slider-mean",
    "slider_means",
    multiple=True,
    metavar="CONDITION=MEAN",
    callback=_slider_means,
    help="Planted true mean (0-100) of a slider condition (mushra, slider trials), e.g. "
    "codec_a=70; repeat for more. Unnamed: hidden reference 98, anchors 25, conditions 60.",
)
@with_appcontext
def simulate_command(
    study: str,
    url: str,
    **options: Any,
) -> None:
    """Run bot participants against a served study, then check every answer was stored once.

    Uses the app's database (DATABASE_URL, the server's) for the answer key and the
    final count. Prints sent=N stored=N duplicates=0 and exits 1 if they disagree.

    Example: study-app simulate demo --url http://127.0.0.1:5000 --participants 50 --concurrency 16 --chaos
    """
    # The bots are a test driver (httpx): loaded when this runs, not by every web worker.
    from study_app.simulate import run_bots

    try:
        cfg = BotConfig(**options)  # the options are named as its fields
    except FieldError as exc:
        raise click.UsageError(exc.render(as_flag)) from None
    row = get_study_or_fail(study)
    view = package_view(row)
    slug = row.slug
    # End this process's transaction before the bots start: on SQLite an open one
    # would hold the write lock the server needs.
    db.session.rollback()
    results = run_bots(url.rstrip("/"), slug, view.manifest, view.key, cfg)
    # Their data must never pass for listeners': the export says data_source=simulated.
    marked = mark_simulated(row, [r.pid for r in results])
    sent = set().union(*(r.sent for r in results))
    stored, duplicates = stored_answers(sent)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    click.echo("bots: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    if cfg.chaos:
        click.echo(
            f"chaos: {sum(r.reloads for r in results)} reloads, {sum(r.dropped for r in results)} dropped "
            f"connections, {sum(r.duplicates_sent for r in results)} repeated submits"
        )
    click.echo(f"{marked} sessions marked simulated (the export's data_source column)")
    click.echo(f"sent={len(sent)} stored={stored} duplicates={duplicates}")
    if stored != len(sent) or duplicates:
        raise SystemExit(1)


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
    row = get_study_or_fail(study)
    if (prolific_pid is None) == (pid_hash is None):
        raise click.UsageError("give exactly one of --prolific-pid and --participant")
    try:
        gone = forget_participant(row, prolific_pid=prolific_pid, digest=pid_hash)
    except NoSuchParticipant as exc:
        raise click.ClickException(str(exc)) from None
    if not gone.participant:
        click.echo(f"deleted {gone.declines} decline record(s) of {gone.digest[:12]}... from '{row.slug}'")
        return
    click.echo(f"deleted participant {gone.digest[:12]}... and {gone.responses} responses from '{row.slug}'")


COMMANDS = (sessions_command, simulate_command, forget_command)
