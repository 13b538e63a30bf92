"""A participant's whole session through the HTTP interface: stages, codes, never lose or duplicate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from sqlalchemy import func, select

from artifact_schemas import AnswerKey
from study_app.db import db
from study_app.models import Event, Response, StudySession
from study_app.models import Participant as ParticipantRow
from study_app.simulate import csrf_token
from tests.study_app.prolific_ids import STUDY, pid_of, prolific_ids, submission_of


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
        assert row.raw_pid is None and pid_of("P1") not in row.pid_hash and len(row.pid_hash) == 64
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
    # Prolific's link carries the submission's SESSION_ID.
    assert other.client.get(f"/s/pilot?{urlencode(prolific_ids('P9'))}").status_code == 302
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
    victim.answer(victim.trial())  # a session with answers holds its Prolific id
    attacker = new_participant()
    guess = submission_of("guess")
    for query in (
        f"?PROLIFIC_PID={pid_of('P10')}",
        f"?PROLIFIC_PID={pid_of('P10')}&STUDY_ID={STUDY}&SESSION_ID={guess}",
    ):
        page = attacker.client.get(f"/s/pilot{query}")
        assert page.status_code == 409 and "already started" in page.get_data(as_text=True)
        assert attacker.client.get("/api/s/pilot/trial").status_code == 401
    # Nor does a consent POST with the victim's id (the lost-reply retry path).
    form = {"csrf_token": csrf_token(attacker.client.get("/s/pilot").get_data(as_text=True))}
    form |= {"choice": "accept", "PROLIFIC_PID": pid_of("P10"), "STUDY_ID": STUDY}
    form |= {"SESSION_ID": submission_of("other")}
    assert attacker.client.post("/s/pilot/consent", data=form).status_code == 409
    assert attacker.client.get("/api/s/pilot/trial").status_code == 401
    assert _count(app, StudySession) == 1


def test_answers_need_every_clip_played(participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    participant.enter()
    participant.post_stage("volume")
    trial = participant.trial()
    response = participant.answer(trial, plays={})
    assert response.status_code == 400 and "listen to every clip to the end" in response.get_json()["error"]
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
    assert p.trial()["attempt"] == 0
    n_screening = sum(1 for t in key.trials.values() if t.trial_type == "screening")
    for _ in range(n_screening):  # first attempt: all wrong
        assert p.answer(p.trial(), correct=False).status_code == 200
    retry = p.trial()
    assert retry["stage"] == "screening" and retry["position"] == 0
    # The page keys the clips it heard by attempt: the retry's are not heard yet.
    assert retry["attempt"] == 1
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
        form = {"csrf_token": token, "choice": "accept", "PROLIFIC_PID": pid_of("RETRY1")}
        form |= {"SESSION_ID": submission_of("RETRY1")}
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


def _sessions(app: Flask) -> list[tuple[str, str | None]]:
    with app.app_context():
        rows = db.session.execute(
            select(StudySession.status, StudySession.prolific_session_id).order_by(StudySession.id)
        ).all()
        return [(status, sid) for status, sid in rows]


def test_a_screened_out_participant_gets_no_second_attempt(
    new_participant: Any, study_app: tuple[Flask, AnswerKey], study_codes: dict[str, str]
) -> None:
    """Issue 31.2: screened out, the participant came back with the same SESSION_ID and no
    or a made-up PROLIFIC_PID, started a new session, passed and was paid."""
    app, _ = study_app
    first = new_participant()
    first.enter(pid="OUT")
    assert study_codes["screened_out"] in first.complete(fail_screening=True)
    same_submission = submission_of("OUT")
    for ids in (
        {"PROLIFIC_PID": "", "SESSION_ID": same_submission},  # no Prolific id
        {"PROLIFIC_PID": pid_of("made-up"), "SESSION_ID": same_submission},
        {"PROLIFIC_PID": pid_of("OUT"), "SESSION_ID": submission_of("new")},  # a new SESSION_ID
        {"PROLIFIC_PID": pid_of("OUT"), "SESSION_ID": ""},
    ):
        again = new_participant()
        entry = again.client.get(f"/s/pilot?{urlencode({'STUDY_ID': STUDY, **ids})}")
        assert entry.status_code == 409 and "already started" in entry.get_data(as_text=True), ids
        # Nor by posting the consent form (the participant's to edit) with these ids.
        form = {"csrf_token": csrf_token(again.client.get("/s/pilot").get_data(as_text=True)) or ""}
        form |= {"choice": "accept", "STUDY_ID": STUDY, **ids}
        assert again.client.post("/s/pilot/consent", data=form).status_code == 409, ids
        assert again.client.get("/api/s/pilot/trial").status_code == 401
    assert _sessions(app) == [("screened_out", same_submission)]
    # Prolific's own link (both ids) still shows the participant where they are.
    back = new_participant()
    assert back.client.get(f"/s/pilot?{urlencode(prolific_ids('OUT'))}").status_code == 302
    assert study_codes["screened_out"] in back.go().get_data(as_text=True)

    # The same for one who completed: a made-up PROLIFIC_PID with their SESSION_ID starts nothing.
    done = new_participant()
    done.enter(pid="DONE")
    assert study_codes["complete"] in done.complete()
    retry = new_participant()
    assert retry.enter(PROLIFIC_PID=pid_of("other"), SESSION_ID=submission_of("DONE")).status_code == 409
    assert len(_sessions(app)) == 2


def test_someone_elses_prolific_id_does_not_lock_its_owner_out(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    """Issue 31.7: whoever consented first with someone else's Prolific id locked its owner
    out (409). A session claimed with the id and another (or no) SESSION_ID, without an
    answer yet, does not keep out the owner's arrival with its own SESSION_ID; one with
    answers does (one participant, one attempt); the squatter's session is not touched."""
    app, _ = study_app
    for squat in ({"SESSION_ID": ""}, {"SESSION_ID": submission_of("made-up")}):
        owner_name = f"OWNER{len(squat['SESSION_ID'])}"
        squatter = new_participant()
        assert squatter.enter(PROLIFIC_PID=pid_of(owner_name), STUDY_ID=STUDY, **squat).status_code == 302
        squatter.post_stage("volume")
        squatter_trial = squatter.trial()["trial"]["id"]
        owner = new_participant()
        assert owner.enter(pid=owner_name).status_code == 302
        owner.post_stage("volume")
        assert owner.answer(owner.trial()).status_code == 200
        assert squatter.trial()["trial"]["id"] == squatter_trial  # each in their own session
    assert [s for s, _ in _sessions(app)] == ["active"] * 4

    # A squatter who has answered keeps the id: its owner is refused, as any second attempt.
    squatter = new_participant()
    squatter.enter(PROLIFIC_PID=pid_of("OWNER3"), STUDY_ID=STUDY, SESSION_ID=submission_of("fake3"))
    squatter.post_stage("volume")
    assert squatter.answer(squatter.trial()).status_code == 200
    owner = new_participant()
    assert owner.enter(pid="OWNER3").status_code == 409
    assert len(_sessions(app)) == 5


def test_prolific_ids_are_checked_at_entry_and_at_consent(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    """Issue 31.4: a STUDY_ID such as ``st1/%2e%2e/...`` or ``st1?x=`` went from the link into
    the researcher's Prolific API calls. Prolific's ids are 24 lowercase hex digits."""
    app, _ = study_app
    good = prolific_ids("CHECKED")
    for name, bad in (
        ("STUDY_ID", "st1/../studies/x"),
        ("STUDY_ID", "st1?x="),
        ("PROLIFIC_PID", "P1"),
        ("PROLIFIC_PID", good["PROLIFIC_PID"].upper()),
        ("SESSION_ID", good["SESSION_ID"] + "0"),
        ("SESSION_ID", "x" * 24),
    ):
        p = new_participant()
        page = p.client.get(f"/s/pilot?{urlencode({**good, name: bad})}")
        text = page.get_data(as_text=True)
        assert page.status_code == 400 and f"{name} is not a Prolific id" in text, (name, bad)
        # The consent form is the participant's to edit: checked there too, accept or decline.
        token = csrf_token(p.client.get("/s/pilot").get_data(as_text=True)) or ""
        for choice in ("accept", "decline"):
            form = {"csrf_token": token, "choice": choice, **good, name: bad}
            posted = p.client.post("/s/pilot/consent", data=form)
            assert posted.status_code == 400 and f"{name} is not a Prolific id" in posted.get_data(
                as_text=True
            )
    assert _count(app, StudySession) == 0 and _count(app, Event) == 0
    # Absent or empty stays allowed (no require_prolific_id), and Prolific's own ids work.
    assert new_participant().client.get("/s/pilot?PROLIFIC_PID=&STUDY_ID=&SESSION_ID=").status_code == 200
    assert new_participant().enter(pid="CHECKED").status_code == 302
    assert _sessions(app) == [("active", good["SESSION_ID"])]


def test_declines_are_limited_per_address_like_new_sessions(
    new_participant: Any, study_app: tuple[Flask, AnswerKey], study_codes: dict[str, str]
) -> None:
    """Issue 31.7: 300 declines in 2.9 s were all stored and counted."""
    app, _ = study_app
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 3
    for i in range(3):
        page = new_participant().enter(pid=f"NO{i}", accept=False)
        assert page.status_code == 200 and study_codes["declined"] in page.get_data(as_text=True)
    for i in range(3, 5):
        page = new_participant().enter(pid=f"NO{i}", accept=False)
        assert page.status_code == 429 and "Too many attempts" in page.get_data(as_text=True)
        assert study_codes["declined"] not in page.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(Event.kind)).all() == ["decline"] * 3
    # Another address is not held up.
    other = new_participant()
    other.client.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert other.enter(pid="NO9", accept=False).status_code == 200
