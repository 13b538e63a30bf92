"""`study-app prolific --create/--publish/--approve/--pay-screen-outs/--bonus` against a real
HTTP server speaking Prolific's protocol (tests/study_app/fake_prolific.py; issue 21).

What is asserted is what a researcher (and their participants) would notice: the study
Prolific gets carries the app's URL, codes and a reward at the rate asked; only submissions
that pass the study's rules are approved; a screened-out participant is paid once; a bonus
is paid once per participant even when the command is run twice or dies between paying and
recording; the token appears nowhere.
"""

from __future__ import annotations

import csv
import logging
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text

from study_app.db import db
from study_app.models import Participant, ProlificPayment, Study, StudySession
from tests.study_app.fake_prolific import FakeProlific
from tests.study_app.prolific_ids import STUDY, pid_of, submission_of

TOKEN = "tok-SECRET-pay-71c2"
BASE = "https://study.example.org"


@pytest.fixture
def prolific(
    study_app: tuple[Flask, Any],
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> Any:
    fake = FakeProlific(TOKEN)
    caplog.set_level(logging.DEBUG)
    with serve(fake.app) as server:
        monkeypatch.setenv("PROLIFIC_API_URL", server.url)
        monkeypatch.setenv("PROLIFIC_TOKEN", TOKEN)
        yield fake


def _cli(app: Flask, *args: str, **kwargs: Any) -> Any:
    return app.test_cli_runner().invoke(args=["prolific", "pilot", *args], **kwargs)


def _settings(tmp_path: Path, body: str) -> str:
    path = tmp_path / "prolific.toml"
    path.write_text(body)
    return str(path)


def test_create_sends_the_apps_url_codes_and_reward_then_publish_needs_an_open_study(
    study_app: tuple[Flask, Any],
    prolific: FakeProlific,
    new_participant: Any,
    study_codes: dict[str, str],
    tmp_path: Path,
) -> None:
    app, _ = study_app
    settings = _settings(
        tmp_path, 'currency = "GBP"\nscreen_out_reward = 0.20\ndevices = ["desktop", "tablet"]\n'
    )
    # A pilot that took an hour: at 12/h for the package's estimate, that is under the minimum.
    pilot = new_participant()
    pilot.enter(pid="PILOT")
    pilot.complete()
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        sess.started_at = sess.finished_at - timedelta(minutes=60)  # type: ignore[operator]
        db.session.commit()

    made = _cli(app, "--create", "--base-url", BASE, "--reward-per-hour", "12", "--settings", settings)
    assert made.exit_code == 0, made.output
    body = prolific.studies[STUDY]
    assert body["status"] == "UNPUBLISHED"
    assert body["external_study_url"] == (
        f"{BASE}/s/pilot?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}&SESSION_ID={{{{%SESSION_ID%}}}}"
    )
    assert body["prolific_id_option"] == "url_parameters"
    codes = {c["code_type"]: c for c in body["completion_codes"]}
    assert codes["COMPLETED"]["code"] == study_codes["complete"]
    assert codes["COMPLETED"]["actions"] == [{"action": "MANUALLY_REVIEW"}]  # --approve reviews
    assert codes["SCREENED_OUT"]["code"] == study_codes["screened_out"]
    assert codes["SCREENED_OUT"]["actions"][0] == {
        "action": "FIXED_SCREEN_OUT_PAYMENT",
        "fixed_screen_out_reward": 20,
    }
    assert codes["NO_CONSENT"]["code"] == study_codes["declined"]
    minutes = body["estimated_completion_time"]
    assert body["reward"] == math.ceil(12 * minutes / 60 * 100 - 1e-9)  # pence, at the rate asked
    assert body["device_compatibility"] == ["desktop", "tablet"] and body["peripheral_requirements"] == [
        "audio"
    ]
    assert body["is_custom_screening"] is True
    assert f"created Prolific study {STUDY} (draft)" in made.output
    assert "under Prolific's minimum" in made.output  # the hour-long pilot

    again = _cli(app, "--create", "--base-url", BASE, "--reward-per-hour", "12")
    assert again.exit_code != 0 and f"already on Prolific as study {STUDY}" in again.output
    assert len(prolific.studies) == 1

    runner = app.test_cli_runner()
    assert runner.invoke(args=["pause", "pilot"]).exit_code == 0
    closed = _cli(app, "--publish")
    assert closed.exit_code != 0 and "study-app open pilot" in closed.output
    assert prolific.studies[STUDY]["status"] == "UNPUBLISHED"
    assert runner.invoke(args=["open", "pilot"]).exit_code == 0
    published = _cli(app, "--publish")
    assert published.exit_code == 0, published.output
    assert prolific.studies[STUDY]["status"] == "ACTIVE"


def test_bad_settings_name_the_file_and_the_key(
    study_app: tuple[Flask, Any], prolific: FakeProlific, tmp_path: Path
) -> None:
    app, _ = study_app
    typo = _settings(tmp_path, "reward_per_hour = 12.0\nscreenout_reward = 0.2\n")
    result = _cli(app, "--create", "--base-url", BASE, "--settings", typo)
    assert result.exit_code != 0 and "prolific.toml" in result.output and "screenout_reward" in result.output
    cheap = _cli(app, "--create", "--base-url", BASE, "--reward-per-hour", "3")
    assert (
        cheap.exit_code != 0 and "reward_per_hour" in cheap.output and "minimum of 6.00 GBP" in cheap.output
    )
    missing = _cli(app, "--create", "--base-url", BASE)
    assert missing.exit_code != 0 and "reward_per_hour" in missing.output
    two = _cli(app, "--approve", "--sync")
    assert two.exit_code == 2 and "give one action" in two.output
    rule = _cli(app, "--bonus", "per_wrong=1")
    assert rule.exit_code == 2 and "per_correct=AMOUNT or flat=AMOUNT" in rule.output
    assert prolific.studies == {}


def _export_correct(app: Flask, tmp_path: Path, participant_hash: str) -> int:
    """Main, non-attention answers marked correct, counted from the export (not the code under test)."""
    out = tmp_path / "export.csv"
    assert app.test_cli_runner().invoke(args=["export", "pilot", "--out", str(out)]).exit_code == 0
    with out.open() as f:
        rows = [r for r in csv.DictReader(f) if r["participant"] == participant_hash]
    return sum(
        r["phase"] == "main" and r["trial_type"] != "attention" and r["correct"] == "True" for r in rows
    )


def test_approve_screen_outs_and_bonuses_pay_each_participant_once(
    study_app: tuple[Flask, Any],
    prolific: FakeProlific,
    new_participant: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    app, _ = study_app
    settings = _settings(tmp_path, "reward_per_hour = 9.0\nscreen_out_reward = 0.25\n")
    assert _cli(app, "--create", "--base-url", BASE, "--settings", settings).exit_code == 0

    good, sloppy, left, back = (new_participant() for _ in range(4))
    good.enter(pid="GOOD")
    good.complete()
    sloppy.enter(pid="SLOPPY")
    sloppy.complete(fail_attention=True)
    left.enter(pid="LEFT")  # screened out, closed the tab: still ACTIVE on Prolific
    left.complete(fail_screening=True)
    back.enter(pid="BACK")  # screened out, went back with the code: Prolific paid it
    back.complete(fail_screening=True)
    for pid, status in (
        ("GOOD", "AWAITING REVIEW"),
        ("SLOPPY", "AWAITING REVIEW"),
        ("LEFT", "ACTIVE"),
        ("BACK", "SCREENED OUT"),
        ("STRANGER", "AWAITING REVIEW"),  # a completion code with no session behind it
    ):
        prolific.add(STUDY, pid, status)

    dry = _cli(app, "--approve", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would approve 1 submission(s); 2 to review" in dry.output
    assert f"{submission_of('SLOPPY')}: " in dry.output and "attention checks right" in dry.output
    assert f"{submission_of('STRANGER')}: no session here" in dry.output
    assert prolific.approved == []
    approved = _cli(app, "--approve")
    assert approved.exit_code == 0 and prolific.approved == [submission_of("GOOD")]
    assert _cli(app, "--approve").exit_code == 0 and prolific.approved == [
        submission_of("GOOD")
    ]  # nothing twice

    paid = _cli(app, "--pay-screen-outs")
    assert paid.exit_code == 0, paid.output
    assert prolific.screened_out == [(submission_of("LEFT"), 0.25)]
    rerun = _cli(app, "--pay-screen-outs")
    assert rerun.exit_code == 0 and "1 paid by an earlier run" in rerun.output
    assert prolific.screened_out == [(submission_of("LEFT"), 0.25)]

    with app.app_context():
        good_hash = db.session.scalars(
            select(Participant.pid_hash)
            .join(StudySession, StudySession.participant_id == Participant.id)
            .where(StudySession.prolific_session_id == submission_of("GOOD"))
        ).one()
    expected = 5 * _export_correct(app, tmp_path, good_hash)
    assert expected > 0
    preview = _cli(app, "--bonus", "per_correct=0.05", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert f"{pid_of('GOOD')},{expected / 100:.2f}" in preview.output
    assert f"{pid_of('SLOPPY')}," not in preview.output
    assert prolific.bulks == {}

    # The pay call's money leaves but its answer is lost (a 502, never retried: paying is
    # not idempotent); the next run must not pay again.
    prolific.throttle_next_pay = True  # a 429 first: Prolific did nothing, so it is retried
    prolific.fail_next_pay_after_paying = True
    lost = _cli(app, "--bonus", "per_correct=0.05")
    assert lost.exit_code == 1 and "HTTP 502" in lost.output
    assert prolific.pay_calls == 2 and prolific.payouts == {pid_of("GOOD"): expected}
    for _ in range(2):
        again = _cli(app, "--bonus", "flat=1.00")
        assert again.exit_code == 0, again.output
        assert "unconfirmed" in again.output and "paid 0 bonus(s)" in again.output
    assert prolific.payouts == {pid_of("GOOD"): expected}

    # Interrupted after Prolific set the bonus up and before the app recorded it: nothing
    # was paid; the next run sets it up again and pays once.
    with app.app_context():
        db.session.execute(ProlificPayment.__table__.delete())
        db.session.commit()
    prolific.payouts.clear()
    with pytest.MonkeyPatch.context() as patch:
        from study_app.prolific.client import ProlificClient

        real = ProlificClient.set_up_bonuses

        def set_up_then_die(self: ProlificClient, *args: Any) -> Any:
            real(self, *args)
            raise RuntimeError("power cut")

        patch.setattr(ProlificClient, "set_up_bonuses", set_up_then_die)
        died = _cli(app, "--bonus", "flat=0.50")
        assert died.exit_code == 1 and isinstance(died.exception, RuntimeError)
    assert prolific.payouts == {} and len(prolific.bulks) == 2
    for _ in range(2):
        assert _cli(app, "--bonus", "flat=0.50").exit_code == 0
    assert prolific.payouts == {pid_of("GOOD"): 50}
    with app.app_context():
        rows = db.session.scalars(select(ProlificPayment).where(ProlificPayment.kind == "bonus")).all()
        assert [(r.submission_id, r.state, r.amount_cents) for r in rows] == [
            (submission_of("GOOD"), "paid", 50)
        ]

    # The token is in no log line, command output, database row or file.
    everything = caplog.text + "".join(
        r.output for r in (dry, approved, paid, rerun, preview, lost, again, died)
    )
    with app.app_context():
        for table in db.metadata.sorted_tables:
            everything += repr(db.session.execute(text(f"SELECT * FROM {table.name}")).all())
        assert db.session.scalars(select(Study.prolific)).one()["id"] == STUDY
    for path in [*Path(app.instance_path).rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            everything += path.read_bytes().decode("utf-8", "replace")
    assert TOKEN not in everything


def test_a_refused_screen_out_leaves_no_record(
    study_app: tuple[Flask, Any], prolific: FakeProlific, new_participant: Any, tmp_path: Path
) -> None:
    app, _ = study_app
    assert (
        _cli(
            app,
            "--create",
            "--base-url",
            BASE,
            "--settings",
            _settings(tmp_path, "reward_per_hour = 9.0\nscreen_out_reward = 0.25\n"),
        ).exit_code
        == 0
    )
    prolific.studies[STUDY]["is_custom_screening"] = False  # changed on Prolific by hand
    left = new_participant()
    left.enter(pid="LEFT")
    left.complete(fail_screening=True)
    prolific.add(STUDY, "LEFT", "ACTIVE")
    refused = _cli(app, "--pay-screen-outs")
    assert refused.exit_code == 1 and "HTTP 400" in refused.output and "custom screening" in refused.output
    prolific.studies[STUDY]["is_custom_screening"] = True
    assert _cli(app, "--pay-screen-outs").exit_code == 0
    assert prolific.screened_out == [(submission_of("LEFT"), 0.25)]


def test_two_bonus_runs_at_once_collide_before_any_money_moves(
    study_app: tuple[Flask, Any], prolific: FakeProlific, new_participant: Any, tmp_path: Path
) -> None:
    """The timer and a researcher run --bonus together: the run that read the records
    before the other wrote them stops at its own first write, having sent nothing."""
    app, _ = study_app
    assert _cli(app, "--create", "--base-url", BASE, "--reward-per-hour", "9").exit_code == 0
    good = new_participant()
    good.enter(pid="GOOD")
    good.complete()
    prolific.add(STUDY, "GOOD", "AWAITING REVIEW")
    assert _cli(app, "--bonus", "flat=0.30").exit_code == 0
    assert prolific.payouts == {pid_of("GOOD"): 30}
    with pytest.MonkeyPatch.context() as patch:
        from study_app.prolific import pay as prolific_pay

        patch.setattr(prolific_pay, "_records", lambda study, kind: {})  # read before the other's write
        late = _cli(app, "--bonus", "flat=0.30")
    assert late.exit_code == 1 and "another run recorded payments" in late.output
    assert prolific.payouts == {pid_of("GOOD"): 30} and len(prolific.bulks) == 1

    # The same for screen-outs (created without screen_out_reward: set it as --create would).
    with app.app_context():
        study = db.session.scalars(select(Study)).one()
        study.prolific = {
            **study.prolific,
            "settings": {**study.prolific["settings"], "screen_out_reward": 0.25},
        }
        db.session.commit()
    prolific.studies[STUDY]["is_custom_screening"] = True
    left = new_participant()
    left.enter(pid="LEFT")
    left.complete(fail_screening=True)
    prolific.add(STUDY, "LEFT", "ACTIVE")
    assert _cli(app, "--pay-screen-outs").exit_code == 0 and prolific.screened_out == [
        (submission_of("LEFT"), 0.25)
    ]
    prolific.submissions[STUDY][submission_of("LEFT")]["status"] = (
        "ACTIVE"  # as if the other run's call were still out
    )
    with pytest.MonkeyPatch.context() as patch:
        from study_app.prolific import pay as prolific_pay

        patch.setattr(prolific_pay, "_records", lambda study, kind: {})
        late = _cli(app, "--pay-screen-outs")
    assert late.exit_code == 1 and "another run recorded payments" in late.output
    assert prolific.screened_out == [(submission_of("LEFT"), 0.25)]


OTHER_STUDY = "6a1b2c3d4e5f60718293a4b5"  # another study of the same researcher on Prolific


def test_approve_pays_only_the_session_whose_three_ids_match(
    study_app: tuple[Flask, Any], prolific: FakeProlific, new_participant: Any
) -> None:
    """Issue 31.2 and 31.4: --approve approved a submission by its SESSION_ID alone, and a
    participant who arrived with another study's STUDY_ID and submission id got that other
    study's submission approved. Only a session whose PROLIFIC_PID, SESSION_ID and STUDY_ID
    are its submission's, in this study, is approved; the output says why not."""
    app, _ = study_app
    # Which Prolific study is this one? Not whatever STUDY_ID participants bring.
    unknown = _cli(app, "--approve", "--dry-run")
    assert unknown.exit_code == 2 and "--prolific-study" in unknown.output
    assert _cli(app, "--create", "--base-url", BASE, "--reward-per-hour", "9").exit_code == 0

    good = new_participant()
    good.enter(pid="GOOD")
    good.complete()
    prolific.add(STUDY, "GOOD", "AWAITING REVIEW")
    # Arrives with another study's STUDY_ID and their submission there as SESSION_ID; their
    # submission of this study is awaiting review too (they entered the code they got).
    other = new_participant()
    other.enter(PROLIFIC_PID=pid_of("ATT"), STUDY_ID=OTHER_STUDY, SESSION_ID=submission_of("ATT-other"))
    other.complete()
    prolific.add(OTHER_STUDY, "ATT", "AWAITING REVIEW", submission=submission_of("ATT-other"))
    prolific.add(STUDY, "ATT", "AWAITING REVIEW")
    # Arrives with their own SESSION_ID but a made-up PROLIFIC_PID.
    mixed = new_participant()
    mixed.enter(PROLIFIC_PID=pid_of("made-up"), STUDY_ID=STUDY, SESSION_ID=submission_of("MIX"))
    mixed.complete()
    prolific.add(STUDY, "MIX", "AWAITING REVIEW")

    approved = _cli(app, "--approve")
    assert approved.exit_code == 0, approved.output
    assert prolific.approved == [submission_of("GOOD")]
    assert "approved 1 submission(s); 2 to review" in approved.output
    assert f"review {submission_of('ATT')}: " in approved.output
    assert "was not opened with this submission's SESSION_ID" in approved.output
    assert f"review {submission_of('MIX')}: " in approved.output
    assert "another PROLIFIC_PID than this submission's participant" in approved.output
    assert not [r for r in prolific.requests if OTHER_STUDY in r]  # never even asked about
    assert prolific.submissions[OTHER_STUDY][submission_of("ATT-other")]["status"] == "AWAITING REVIEW"

    # Bonuses follow the same rule: nobody but GOOD is due one.
    bonus = _cli(app, "--bonus", "flat=0.10", "--dry-run")
    assert bonus.exit_code == 0, bonus.output
    assert f"{pid_of('GOOD')},0.10" in bonus.output and "would pay 1 bonus(s)" in bonus.output
    assert pid_of("MIX") not in bonus.output.split("would pay")[0]
    assert f"{submission_of('MIX')} not paid a bonus" in bonus.output
