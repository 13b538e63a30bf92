"""``study-app prolific``: a study on Prolific, from the form's values to the last bonus.

One action per run; each is one call into ``study_app.prolific.study`` / ``study_app.prolific.pay``
and the printing of its result. The API token comes from PROLIFIC_TOKEN only (never an
option: it would land in shell history and process lists).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from artifact_schemas import ArtifactError, FieldError, as_flag
from study_app.commands.common import field_option, get_study_or_fail
from study_app.participant import PROLIFIC_COMPLETE
from study_app.prolific import pay
from study_app.prolific import study as prolific_study
from study_app.prolific.client import ProlificClient, ProlificError
from study_app.prolific.pay import PaymentConflict

ACTIONS = ("sync", "create", "publish", "approve", "pay_screen_outs", "bonus")


@click.command("prolific")
@click.argument("study")
@click.option("--base-url", help="Where participants reach the app, e.g. https://study.example.org")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--sync",
    is_flag=True,
    help="Pull submission statuses from Prolific; returned, timed-out and rejected submissions "
    "free their list place.",
)
@click.option(
    "--prolific-study",
    "prolific_studies",
    multiple=True,
    help="Prolific study id to sync or pay from (default: the one --create made; --sync also "
    "every STUDY_ID the sessions arrived with).",
)
@click.option("--create", is_flag=True, help="Create the study on Prolific as a draft (needs --base-url).")
@click.option(
    "--settings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Prolific settings (TOML: reward, devices, screen-out reward; docs/prolific.md).",
)
@click.option(
    "--reward-per-hour", type=float, help="Reward per hour in the study's currency (overrides --settings)."
)
@click.option(
    "--publish", is_flag=True, help="Publish the study --create made (the study must be open here)."
)
@click.option(
    "--approve",
    is_flag=True,
    help="Approve completed submissions that pass the exclusion rules; list the rest for review.",
)
@field_option(
    pay.ApprovalRules,
    "min_attention_correct",
    "--min-attention",
    help="Share of attention checks right below which a submission goes to review (--approve, --bonus).",
)
@click.option(
    "--pay-screen-outs",
    is_flag=True,
    help="Pay the screen-out reward to screened-out participants still ACTIVE on Prolific.",
)
@click.option("--bonus", "bonus_rule", metavar="RULE", help="Pay bonuses: per_correct=0.05 or flat=0.50.")
@click.option(
    "--dry-run", is_flag=True, help="With --approve, --pay-screen-outs or --bonus: show, pay nothing."
)
@with_appcontext
def prolific_command(study: str, base_url: str | None, as_json: bool, **options: Any) -> None:
    """Run STUDY on Prolific through its API (token in PROLIFIC_TOKEN).

    Without an action: print what to paste into Prolific's study form by hand. Actions,
    one per run: --create (draft study, with the URL, completion codes, places, time and
    reward), --publish, --sync (statuses; also from a timer, see
    deploy/systemd/study-app-prolific-sync.timer), --approve, --pay-screen-outs and
    --bonus RULE. Paying is recorded per participant: a second run, or a run after an
    interruption, pays nobody twice. docs/prolific.md walks through a whole study.

    \b
    Example: study-app prolific demo --base-url https://study.example.org
    Example: study-app prolific demo --create --reward-per-hour 12 --base-url https://study.example.org
    Example: study-app prolific demo --bonus per_correct=0.05 --dry-run
    """
    chosen = [a for a in ACTIONS if options.get(a) if a != "bonus"] + (
        ["bonus"] if options["bonus_rule"] else []
    )
    if len(chosen) > 1:
        raise click.UsageError("give one action: " + ", ".join(as_flag(a) for a in chosen))
    row = get_study_or_fail(study)
    if not chosen:
        _print_form(row, base_url, as_json)
        return
    try:
        settings = _settings(options) if chosen == ["create"] else None
        with ProlificClient.from_env() as client:
            result = _run(chosen[0], row, client, base_url, settings, options)
    except (ProlificError, PaymentConflict) as exc:
        raise click.ClickException(str(exc)) from None
    except ArtifactError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _print(chosen[0], result, as_json)


def _settings(options: dict[str, Any]) -> Any:
    return prolific_study.load_prolific_settings(
        options["settings"], reward_per_hour=options["reward_per_hour"]
    )


def _run(
    action: str, row: Any, client: Any, base_url: str | None, settings: Any, options: dict[str, Any]
) -> Any:
    try:
        rules = pay.ApprovalRules(min_attention_correct=options["min_attention_correct"])
    except FieldError:
        raise click.BadParameter("must be in [0, 1]", param_hint="--min-attention") from None
    dry = options["dry_run"]
    given = list(options["prolific_studies"]) or None
    if action == "sync":
        return prolific_study.sync_submissions(row, client, list(options["prolific_studies"]))
    if action == "create":
        if not base_url:
            raise ValueError("--create needs --base-url (where participants reach the app)")
        return prolific_study.create_prolific_study(row, client, settings, base_url)
    if action == "publish":
        return {"published": prolific_study.publish_prolific_study(row, client)}
    if action == "approve":
        return pay.approve_submissions(row, client, rules, dry_run=dry, prolific_study_ids=given)
    if action == "pay_screen_outs":
        return pay.pay_screen_outs(row, client, dry_run=dry, prolific_study_ids=given)
    rule = pay.BonusRule.parse(options["bonus_rule"])
    return pay.pay_bonuses(row, client, rule, rules, dry_run=dry, prolific_study_ids=given)


def _print(action: str, result: Any, as_json: bool) -> None:
    data = result if isinstance(result, dict) else asdict(result)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if action == "sync":
        shown = ", ".join(f"{k} {v}" for k, v in sorted(data["statuses"].items())) or "none"
        click.echo(
            f"Prolific: {data['seen']} submissions ({shown}); {data['matched']} matched to sessions here"
        )
        for line in data["released"]:
            click.echo(f"  place released: {line}")
        for line in data["skipped"]:
            click.echo(f"  skipped: {line}")
    elif action == "create":
        click.echo(
            f"created Prolific study {data['prolific_id']} (draft): {data['places']} places, "
            f"{data['minutes']} min, reward {data['reward_cents'] / 100:.2f}; publish with --publish"
        )
    elif action == "publish":
        click.echo(f"published Prolific study {data['published']}")
    elif action == "approve":
        verb = "would approve" if data["dry_run"] else "approved"
        click.echo(f"rules (the analysis excludes by the same): {data['rules']}")
        click.echo(f"{verb} {len(data['approved'])} submission(s); {len(data['review'])} to review")
        for sub in data["approved"]:
            click.echo(f"  approve {sub}: completed, passes every rule")
        for line in data["review"]:
            click.echo(f"  review {line}")
    else:
        _print_payments(data)
    for warning in data.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)


def _print_payments(data: dict[str, Any]) -> None:
    what = "bonus" if data["kind"] == "bonus" else "screen-out payment"
    if data["dry_run"] and data["kind"] == "bonus":
        click.echo("participant_id,amount (the CSV Prolific would get):")
        click.echo(data["csv"] or "(nobody is due a bonus)")
    verb = "would pay" if data["dry_run"] else "paid"
    click.echo(f"{verb} {len(data['paid'])} {what}(s), {data['total_cents'] / 100:.2f} in all")
    if data["already"]:
        click.echo(f"  {len(data['already'])} paid by an earlier run (not paid again)")
    for line in data["unconfirmed"]:
        click.echo(
            f"  unconfirmed (sent, Prolific's answer lost; check on Prolific, never paid again): {line}"
        )


def _print_form(row: Any, base_url: str | None, as_json: bool) -> None:
    if not base_url:
        raise click.UsageError("--base-url is required (or an action such as --sync)")
    try:
        setup = prolific_study.prolific_setup(row, base_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--base-url") from exc
    if as_json:
        click.echo(json.dumps(setup.as_dict(), indent=2))
        return
    click.echo("Study URL (Prolific: 'What is the URL of your study?'; keep the three placeholders):")
    click.echo(f"  {setup.study_url}")
    click.echo("Completion codes (Prolific: 'How to confirm participants have completed your study?'):")
    for name, meaning in (
        ("completed", "completed the study        -> approve"),
        ("screened_out", "failed the headphone check -> 'screened out' (fixed payment)"),
        ("declined", "did not consent            -> ask them to return the study"),
    ):
        click.echo(f"  {setup.codes[name]:<10} {meaning}")
    click.echo(f"  participants are redirected to {PROLIFIC_COMPLETE.format(code='CODE')}")
    click.echo(f"Places: {setup.places} (lists x target participants)")
    click.echo(f"Estimated time: {setup.minutes} min (longest list; run a pilot and adjust)")
    for warning in setup.warnings:
        click.echo(f"warning: {warning}", err=True)
