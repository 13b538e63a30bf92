"""`study-app prolific --sync` against a real HTTP server speaking Prolific's protocol (issue 21).

The server is Flask on a loopback port: token check, paged submissions, a 429 before the
first answer. What is asserted is what a researcher would notice: a participant who
returned the study on Prolific frees the place within one sync, and the token appears
nowhere the app writes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request
from sqlalchemy import select, text, update

from study_app.db import db
from study_app.models import StudySession, TrialList
from tests.study_app.prolific_ids import STUDY, pid_of, submission_of

TOKEN = "tok-SECRET-5f3a9c"


class FakeProlific:
    """The submissions endpoint: ``statuses`` maps a participant (named as in
    tests.study_app.prolific_ids) to Prolific's status."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}
        self.calls = 0
        self.app = Flask("fake-prolific")
        self.app.add_url_rule("/api/v1/studies/<sid>/submissions/", view_func=self.submissions)

    def submissions(self, sid: str) -> Any:
        self.calls += 1
        if request.headers.get("Authorization") != f"Token {TOKEN}":
            return jsonify(error={"status": 401, "title": "Unauthorized", "detail": "Invalid token."}), 401
        if self.calls == 1:
            return jsonify(detail="slow down"), 429, {"Retry-After": "0"}
        rows = [
            {"id": submission_of(name), "participant_id": pid_of(name), "status": status, "study_id": sid}
            for name, status in sorted(self.statuses.items())
        ]
        limit, offset = int(request.args["limit"]), int(request.args["offset"])
        return jsonify(results=rows[offset : offset + limit], meta={"count": len(rows)})


def _into_trials(p: Any) -> None:
    p.post_stage("volume")
    while "trial" in (data := p.trial()):
        assert p.answer(data).status_code == 200
    p.post_stage("instructions")
    assert p.trial()["stage"] == "trials"


def test_a_returned_submission_frees_its_place_within_one_sync(
    study_app: tuple[Flask, Any],
    new_participant: Any,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    app, _ = study_app
    with app.app_context():
        db.session.execute(update(TrialList).values(target=1))
        db.session.commit()
    people = {f"P{i}": new_participant() for i in range(4)}
    for pid, p in people.items():
        assert p.enter(pid=pid).status_code == 302
        _into_trials(p)
    assert new_participant().enter(pid="LATE").status_code == 503  # every list is at its target
    freed = {_list_of(app, submission_of("P1")), _list_of(app, submission_of("P3"))}  # returned, timed out

    fake = FakeProlific()
    fake.statuses = {
        "P0": "ACTIVE",
        "P1": "RETURNED",
        "P2": "ACTIVE",
        "P3": "TIMED-OUT",
        "NOT-HERE": "ACTIVE",
    }
    caplog.set_level(logging.DEBUG)
    with serve(fake.app) as prolific:
        monkeypatch.setenv("PROLIFIC_API_URL", prolific.url)
        monkeypatch.setenv("PROLIFIC_TOKEN", TOKEN)
        runner = app.test_cli_runner()
        first = runner.invoke(args=["prolific", "pilot", "--sync"])
        assert first.exit_code == 0, first.output
        assert "5 submissions" in first.output and "4 matched" in first.output
        assert first.output.count("place released") == 2  # RETURNED and TIMED-OUT
        again = runner.invoke(args=["prolific", "pilot", "--sync"])  # idempotent
        assert again.exit_code == 0 and "place released" not in again.output
        assert fake.calls == 3  # one 429, retried, then the second sync

        late = new_participant()
        assert late.enter(pid="LATE").status_code == 302  # the returned place is taken again
        with app.app_context():
            newest = db.session.scalars(select(StudySession).order_by(StudySession.id.desc())).first()
            assert newest is not None and newest.list_id in freed
            row = db.session.scalars(
                select(StudySession).where(StudySession.prolific_session_id == submission_of("P1"))
            ).one()
            assert (row.status, row.prolific_status) == ("returned", "RETURNED")
            assert (
                db.session.scalars(
                    select(StudySession.status).where(StudySession.prolific_session_id == submission_of("P0"))
                ).one()
                == "active"
            )

        bad_token = runner.invoke(args=["prolific", "pilot", "--sync"], env={"PROLIFIC_TOKEN": "wrong"})
        assert bad_token.exit_code == 1
        assert "HTTP 401: Unauthorized; Invalid token." in bad_token.output
        assert "wrong" not in bad_token.output
        no_token = runner.invoke(args=["prolific", "pilot", "--sync"], env={"PROLIFIC_TOKEN": ""})
        assert no_token.exit_code == 1 and "PROLIFIC_TOKEN is not set" in no_token.output

    # The export flags the returned participant's answers instead of dropping them.
    out = tmp_path / "export.csv"
    assert runner.invoke(args=["export", "pilot", "--out", str(out)]).exit_code == 0
    assert "returned" in out.read_text()
    # The token is in no log line, no command output, no database row and no file.
    everything = caplog.text + first.output + again.output + bad_token.output
    with app.app_context():
        for table in db.metadata.sorted_tables:
            everything += repr(db.session.execute(text(f"SELECT * FROM {table.name}")).all())
    for path in [*Path(app.instance_path).rglob("*"), *tmp_path.rglob("*")]:
        if path.is_file():
            everything += path.read_bytes().decode("utf-8", "replace")
    assert TOKEN not in everything


def _list_of(app: Flask, submission: str) -> int:
    with app.app_context():
        return int(
            db.session.scalars(
                select(StudySession.list_id).where(StudySession.prolific_session_id == submission)
            ).one()
        )


def test_an_unreachable_prolific_is_one_line_without_the_token(port: Any) -> None:
    from study_app.prolific.client import ProlificClient, ProlificError

    with ProlificClient(TOKEN, f"http://127.0.0.1:{port()}", retries=1, backoff_s=0.0) as client:
        assert TOKEN not in repr(client)
        with pytest.raises(ProlificError) as caught:
            list(client.submissions(STUDY))
    assert (
        str(caught.value)
        == f"GET /api/v1/studies/{STUDY}/submissions/: Prolific did not answer (ConnectError)"
    )


def test_one_arrivals_bad_study_id_is_skipped_and_reaches_no_api_path(
    study_app: tuple[Flask, Any], new_participant: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 31.4: an arrival's ``STUDY_ID=st1/%2e%2e/...`` or ``st1?x=`` went into API paths
    and made every --sync exit 1. Such ids (from sessions stored before entry checked them)
    are not asked about, one Prolific does not know is passed over, both said; the client
    refuses any id that is not Prolific's before sending."""
    from study_app.prolific.client import ProlificClient, ProlificError
    from tests.study_app.fake_prolific import FakeProlific as PayingProlific

    app, _ = study_app
    for name in ("P0", "OLD1", "OLD2", "UNKNOWN"):
        study = "0" * 24 if name == "UNKNOWN" else STUDY  # well-formed, but nobody's study
        assert new_participant().enter(pid=name, STUDY_ID=study).status_code == 302
    with app.app_context():
        for name, bad in (("OLD1", "st1/%2e%2e/x"), ("OLD2", "st1?x=")):
            db.session.execute(
                update(StudySession)
                .where(StudySession.prolific_session_id == submission_of(name))
                .values(prolific_study_id=bad)
            )
        db.session.commit()
    fake = PayingProlific(TOKEN)
    fake.add(STUDY, "P0", "RETURNED")
    with serve(fake.app) as prolific:
        monkeypatch.setenv("PROLIFIC_API_URL", prolific.url)
        monkeypatch.setenv("PROLIFIC_TOKEN", TOKEN)
        synced = app.test_cli_runner().invoke(args=["prolific", "pilot", "--sync"])
        assert synced.exit_code == 0, synced.output
        assert "1 matched" in synced.output and synced.output.count("place released") == 1
        assert "skipped: STUDY_ID 'st1/%2e%2e/x'" in synced.output and "not a Prolific id" in synced.output
        assert "skipped: STUDY_ID 'st1?x='" in synced.output
        assert f"skipped: STUDY_ID {'0' * 24}" in synced.output and "HTTP 404" in synced.output
        assert fake.requests and not [r for r in fake.requests if "st1" in r]

        with ProlificClient(TOKEN, prolific.url, retries=0) as client:
            for call in (
                lambda: list(client.submissions("st1/../studies/x")),
                lambda: client.transition_submission("st1?x=", "APPROVE"),
                lambda: client.publish_study("../" + STUDY),
                lambda: client.bulk_approve(STUDY, ["a/b"]),
            ):
                sent = len(fake.requests)
                with pytest.raises(ProlificError, match="is not a Prolific id") as refused:
                    call()
                assert refused.value.refused and len(fake.requests) == sent
