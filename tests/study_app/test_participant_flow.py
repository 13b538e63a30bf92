"""A participant's whole session through the HTTP interface: stages, codes, never lose or duplicate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from artifact_schemas import AnswerKey
from study_app.db import db
from study_app.models import Event, Response, StudySession
from study_app.models import Participant as ParticipantRow
from study_app.simulate import csrf_token


def _count(app: Flask, model: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model)) or 0


def test_full_session_ends_with_completion_code(
    participant: Any, study_app: tuple[Flask, AnswerKey], study_codes: dict[str, str]
) -> None:
    app, _ = study_app
    assert participant.enter(pid="P1").status_code == 302
    html = participant.complete()
    assert study_codes["complete"] in html
    assert f"https://app.prolific.com/submissions/complete?cc={study_codes['complete']}" in html
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        assert (sess.status, sess.stage) == ("completed", "done")
        assert sess.questionnaire == {"device": "Headphones"}
        assert sess.screen == "800x600"
        n = db.session.scalar(select(func.count()).select_from(Response))
        assert n == len(sess.trial_order) == len(participant.sent)
        # The Prolific id is stored only as a salted hash.
        row = db.session.scalars(select(ParticipantRow)).one()
        assert row.raw_pid is None and "P1" not in row.pid_hash and len(row.pid_hash) == 64
    # Coming back later shows the same completion page, not a new session.
    assert study_codes["complete"] in participant.go().get_data(as_text=True)


def test_decline_ends_with_decline_code_and_no_session(
    participant: Any, study_app: tuple[Flask, AnswerKey], study_codes: dict[str, str]
) -> None:
    app, _ = study_app
    page = participant.enter(pid="P2", accept=False)
    html = page.get_data(as_text=True)
    assert study_codes["declined"] in html
    assert study_codes["complete"] not in html and study_codes["screened_out"] not in html
    assert _count(app, StudySession) == 0
    with app.app_context():
        assert db.session.scalars(select(Event.kind)).all() == ["decline"]


def test_failed_screening_ends_with_screen_out_code(
    participant: Any, study_app: tuple[Flask, AnswerKey], study_codes: dict[str, str]
) -> None:
    app, _ = study_app
    participant.enter(pid="P3")
    html = participant.complete(fail_screening=True)
    assert study_codes["screened_out"] in html and study_codes["complete"] not in html
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        assert sess.status == "screened_out"
        assert "screening_fail" in db.session.scalars(select(Event.kind)).all()


def test_duplicate_submit_returns_original_and_stores_once(
    participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    app, _ = study_app
    participant.enter()
    participant.post_stage("volume")
    trial = participant.trial()
    first = participant.answer(trial, key="same-key-0001")
    again = participant.answer(trial, key="same-key-0001")
    assert first.status_code == again.status_code == 200
    assert again.get_json() == {**first.get_json(), "duplicate": True}
    assert _count(app, Response) == 1
    # The trial answered is no longer current: a stale submit with a new key is refused.
    stale = participant.answer(trial, key="other-key-0002")
    assert stale.status_code == 409
    assert stale.get_json()["current_trial"] == participant.trial()["trial"]["id"]
    assert _count(app, Response) == 1


def test_reload_returns_to_the_current_trial(participant: Any) -> None:
    participant.enter()
    participant.post_stage("volume")
    first = participant.trial()["trial"]["id"]
    participant.go()
    assert participant.trial()["trial"]["id"] == first
    participant.answer(participant.trial())
    second = participant.trial()["trial"]["id"]
    assert second != first
    participant.client.get(f"/s/{participant.slug}")  # the entry link again
    assert participant.trial()["trial"]["id"] == second


def test_prolific_pid_resumes_session_in_another_browser(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    app, _ = study_app
    first = new_participant()
    first.enter(pid="P9")
    first.post_stage("volume")
    first.answer(first.trial())
    current = first.trial()["trial"]["id"]
    other = new_participant()  # e.g. the participant switched from phone to laptop
    # Prolific's link carries the submission's SESSION_ID (the fixture's is "xP9").
    assert other.client.get("/s/pilot?PROLIFIC_PID=P9&STUDY_ID=s1&SESSION_ID=xP9").status_code == 302
    assert other.trial()["trial"]["id"] == current
    assert _count(app, StudySession) == 1


def test_a_known_prolific_id_alone_does_not_open_its_session(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    """Issue 16.6: /s/demo?PROLIFIC_PID=<victim> without the cookie landed on the victim's
    current trial, and the answer was accepted."""
    app, _ = study_app
    victim = new_participant()
    victim.enter(pid="P10")
    victim.post_stage("volume")
    attacker = new_participant()
    for query in ("?PROLIFIC_PID=P10", "?PROLIFIC_PID=P10&STUDY_ID=s1&SESSION_ID=guess"):
        page = attacker.client.get(f"/s/pilot{query}")
        assert page.status_code == 409 and "already started" in page.get_data(as_text=True)
        assert attacker.client.get("/api/s/pilot/trial").status_code == 401
    # Nor does a consent POST with the victim's id (the lost-reply retry path).
    form = {"csrf_token": csrf_token(attacker.client.get("/s/pilot").get_data(as_text=True))}
    form |= {"choice": "accept", "PROLIFIC_PID": "P10", "STUDY_ID": "s1", "SESSION_ID": "other"}
    assert attacker.client.post("/s/pilot/consent", data=form).status_code == 409
    assert attacker.client.get("/api/s/pilot/trial").status_code == 401
    assert _count(app, StudySession) == 1


def test_answers_need_every_clip_played(participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    participant.enter()
    participant.post_stage("volume")
    trial = participant.trial()
    response = participant.answer(trial, plays={})
    assert response.status_code == 400 and "played" in response.get_json()["error"]
    assert _count(app, Response) == 0


def test_trial_json_reveals_nothing_from_the_key(participant: Any, example_package: Path) -> None:
    key = json.loads((example_package / "key.json").read_text())
    participant.enter()
    participant.post_stage("volume")
    body = participant.client.get(f"/api/s/{participant.slug}/trial").get_data(as_text=True)
    for tk in key["trials"].values():
        if tk["correct_option"]:
            assert "correct" not in body
    for word in ("steer", "baseline", "layer", "feature", "labeler", "descriptors", "clap-vocab", "correct"):
        assert word not in body.casefold()


def test_screening_retry_policy(new_participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    """With max_attempts = 2 a participant who fails once may take the test again."""
    app, key = study_app
    with app.app_context():
        from study_app.models import Study

        study = db.session.scalars(select(Study)).one()
        manifest = dict(study.manifest)
        manifest["screening"] = {**manifest["screening"], "max_attempts": 2}
        study.manifest = manifest
        study.manifest_sha256 = "f" * 64  # a new view of the package in this process
        db.session.commit()
    p = new_participant()
    p.enter()
    p.post_stage("volume")
    n_screening = sum(1 for t in key.trials.values() if t.trial_type == "screening")
    for _ in range(n_screening):  # first attempt: all wrong
        assert p.answer(p.trial(), correct=False).status_code == 200
    retry = p.trial()
    assert retry["stage"] == "screening" and retry["position"] == 0
    for _ in range(n_screening):  # second attempt: all right
        assert p.answer(p.trial()).status_code == 200
    assert p.trial()["stage"] == "instructions"
    with app.app_context():
        assert db.session.scalars(select(Event.kind).order_by(Event.id)).all()[-2:] == [
            "screening_fail",
            "screening_pass",
        ]
        attempts = db.session.scalars(select(Response.attempt)).all()
        assert sorted(set(attempts)) == [0, 1] and len(attempts) == 2 * n_screening


def test_repeated_consent_with_a_prolific_id_returns_the_same_session(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    """The reply to "I agree" was lost and the browser (without the cookie) sends it again."""

    app, _ = study_app
    for _ in range(3):  # a fresh browser each time: no cookie came back
        client = new_participant().client
        page = client.get("/s/pilot").get_data(as_text=True)  # the consent page, Prolific id in the form
        token = csrf_token(page)
        assert token
        form = {"csrf_token": token, "choice": "accept", "PROLIFIC_PID": "RETRY1", "SESSION_ID": "S1"}
        assert client.post("/s/pilot/consent", data=form).status_code == 302
    assert _count(app, StudySession) == 1


def test_completion_codes_cannot_be_computed_from_the_package(
    study_app: tuple[Flask, AnswerKey], study_codes: dict[str, str], example_package: Path
) -> None:
    """Issue 16.1: codes were sha256(seed|study|code|which), and the declined one was shown
    to anyone who declined, so the seed and then the completed code fell out."""
    import hashlib

    from study_app.packages import CODE_ALPHABET, completion_codes

    key = study_app[1]
    assert key.codes.complete is None  # the builder writes none the researcher did not choose
    package_text = "".join(p.read_text() for p in example_package.glob("*.json"))
    for which, code in study_codes.items():
        assert len(code) == 10 and set(code) <= set(CODE_ALPHABET)
        assert code not in package_text
        for seed in range(100):  # the old derivation, over every small seed
            digest = hashlib.sha256(f"{seed}|pilot|code|{which}".encode()).digest()
            assert code != "".join(CODE_ALPHABET[b % 32] for b in digest[:8])
    assert len(set(study_codes.values())) == 3
    # Another import of the same package draws other codes; a researcher's own are kept.
    assert completion_codes(key, {}) != study_codes
    chosen = key.model_copy(update={"codes": key.codes.model_copy(update={"complete": "MYCODE42"})})
    assert completion_codes(chosen, {})["complete"] == "MYCODE42"
