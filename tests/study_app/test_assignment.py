"""Balanced list assignment under concurrent arrivals, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import func, select, update

from study_app.db import db
from study_app.models import StudySession, TrialList
from study_app.simulate import csrf_token

ARRIVALS = 60


def _arrive(base: str, i: int) -> int:
    with httpx.Client(base_url=base, timeout=60) as client:
        page = client.get(f"/s/pilot?PROLIFIC_PID={i:024x}")  # Prolific's id format
        token = csrf_token(page.text)
        assert token
        form = {"csrf_token": token, "choice": "accept", "PROLIFIC_PID": f"{i:024x}"}
        return client.post("/s/pilot/consent", data=form).status_code


def _run_arrivals(app: Flask, package: Path, target: int, serve: Any) -> tuple[Counter[int], dict[int, int]]:
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(package)]).exit_code == 0
        db.session.execute(update(TrialList).values(target=target))
        db.session.commit()
    with serve(app) as server, ThreadPoolExecutor(max_workers=ARRIVALS) as pool:
        codes = Counter(pool.map(lambda i: _arrive(server.url, i), range(ARRIVALS)))
    with app.app_context():
        per_list = Counter(db.session.scalars(select(StudySession.list_id)).all())
        targets = {lst.id: lst.target for lst in db.session.scalars(select(TrialList))}
    return codes, {k: per_list.get(k, 0) for k in targets}


@pytest.mark.parametrize("target", [100, 5])
def test_concurrent_arrivals_sqlite(app: Flask, example_package: Path, serve: Any, target: int) -> None:
    _check(*_run_arrivals(app, example_package, target, serve), target)


@pytest.mark.parametrize("target", [100, 5])
def test_concurrent_arrivals_postgres(pg_app: Flask, example_package: Path, serve: Any, target: int) -> None:
    _check(*_run_arrivals(pg_app, example_package, target, serve), target)


def _check(codes: Counter[int], per_list: dict[int, int], target: int) -> None:
    n_lists = len(per_list)
    expected = min(ARRIVALS, target * n_lists)
    assert codes[302] == expected, codes  # redirected into a session
    assert codes[503] == ARRIVALS - expected, codes  # "study full" for the rest
    assert sum(per_list.values()) == expected
    assert max(per_list.values()) - min(per_list.values()) <= 1, per_list
    assert max(per_list.values()) <= target


def test_inactive_sessions_release_their_slot(new_participant: Any, study_app: tuple[Flask, Any]) -> None:
    from datetime import timedelta

    from study_app.models import utcnow

    app, _ = study_app
    with app.app_context():
        db.session.execute(update(TrialList).values(target=1))
        db.session.commit()
    for _ in range(4):
        assert new_participant().enter().status_code == 302
    assert new_participant().enter().status_code == 503  # every list is full
    with app.app_context():
        stale = db.session.scalars(select(StudySession).order_by(StudySession.id)).first()
        assert stale is not None
        freed_list = stale.list_id
        stale.last_seen_at = utcnow() - timedelta(seconds=app.config["SESSION_TIMEOUT_S"] + 1)
        db.session.commit()
    assert new_participant().enter().status_code == 302
    with app.app_context():
        newest = db.session.scalars(select(StudySession).order_by(StudySession.id.desc())).first()
        assert newest is not None and newest.list_id == freed_list


def _to_instructions(p: Any) -> None:
    p.post_stage("volume")
    while "trial" in (data := p.trial()):
        assert p.answer(data).status_code == 200
    assert data["stage"] == "instructions"


def _idle(app: Flask, seconds: float) -> None:
    """As if every session had last been seen ``seconds`` ago (no test waits on the clock)."""
    from datetime import timedelta

    with app.app_context():
        for sess in db.session.scalars(select(StudySession)):
            sess.last_seen_at = sess.last_seen_at - timedelta(seconds=seconds)
            sess.started_at = sess.started_at - timedelta(seconds=seconds)
        db.session.commit()


def test_sessions_that_only_consented_do_not_hold_places(
    study_app: tuple[Flask, Any], new_participant: Any
) -> None:
    """Issue 16.5: 8 consents filled an 8-place study, and a real participant got 'This study
    is full' for an hour. Places are held from the first trial; before it, a session counts
    only while it keeps moving (SETUP_TIMEOUT_S)."""
    app, _ = study_app
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    with app.app_context():
        db.session.execute(update(TrialList).values(target=2))
        db.session.commit()
    squatters = [new_participant() for _ in range(8)]
    assert [p.enter().status_code for p in squatters] == [302] * 8
    assert new_participant().enter().status_code == 503  # counted while they might go on...
    _idle(app, app.config["SETUP_TIMEOUT_S"] + 1)  # ... but they never moved again
    real = new_participant()
    assert real.enter(pid="REAL1").status_code == 302
    _to_instructions(real)
    real.post_stage("instructions")
    assert real.trial()["stage"] == "trials"


def test_reloading_the_consent_page_does_not_keep_a_place(
    study_app: tuple[Flask, Any], new_participant: Any
) -> None:
    """Issue 31.7: one GET per place every 30 s kept a study "full" past SETUP_TIMEOUT_S."""
    app, _ = study_app
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    with app.app_context():
        db.session.execute(update(TrialList).values(target=1))
        db.session.commit()
    squatters = [new_participant() for _ in range(4)]
    assert [p.enter().status_code for p in squatters] == [302] * 4
    assert new_participant().enter().status_code == 503
    _idle(app, app.config["SETUP_TIMEOUT_S"] + 1)
    assert all(p.go().status_code == 200 for p in squatters)  # each still reloads its page
    assert new_participant().enter().status_code == 302


def test_the_last_place_goes_to_whoever_reaches_the_trials_first(
    study_app: tuple[Flask, Any], new_participant: Any
) -> None:
    app, _ = study_app
    with app.app_context():
        lists = db.session.scalars(select(TrialList).order_by(TrialList.position)).all()
        for i, lst in enumerate(lists):
            lst.target = 1 if i == 0 else 0
        db.session.commit()
    slow, fast = new_participant(), new_participant()
    assert slow.enter(pid="SLOW").status_code == 302
    _to_instructions(slow)
    _idle(app, app.config["SETUP_TIMEOUT_S"] + 1)  # slow stops at the instructions a while
    assert fast.enter(pid="FAST").status_code == 302  # the same list: slow no longer counts
    _to_instructions(fast)
    fast.post_stage("instructions")
    assert fast.trial()["stage"] == "trials"
    page = slow.post_stage("instructions")  # slow comes back: the place is taken
    assert page.status_code == 503 and "This study is full" in page.get_data(as_text=True)
    assert "All places were taken" in slow.go().get_data(as_text=True)
    with app.app_context():
        statuses = dict(
            db.session.execute(select(StudySession.status, func.count()).group_by(StudySession.status)).all()
        )
    assert statuses == {"active": 1, "full": 1}


def test_a_study_that_requires_a_prolific_id_turns_strangers_away(
    app: Flask, example_run: Path, write_config: Any, tmp_path: Path
) -> None:
    """Issue 16.5's option: with ``require_prolific_id`` someone who found the URL (no
    PROLIFIC_PID) gets neither the consent page nor a session, even by posting the form
    without the id; a link from Prolific works as before."""
    from artifact_schemas import load_key
    from stimuli_builder.build import build_package

    from .conftest import Participant

    config = write_config(tmp_path / "config", **{"seed = 3": "seed = 3\nrequire_prolific_id = true"})
    build_package(config, example_run, tmp_path / "pilot")
    with app.app_context():
        imported = app.test_cli_runner().invoke(args=["import", str(tmp_path / "pilot")])
        assert imported.exit_code == 0, imported.output
    key = load_key(tmp_path / "pilot" / "key.json")

    stranger = Participant(app, "pilot", key)
    page = stranger.client.get("/s/pilot")
    assert page.status_code == 403 and "Please open this study from Prolific" in page.get_data(as_text=True)
    # The consent page reached through a Prolific link, then the form posted without the id.
    stranger.token = (
        csrf_token(stranger.client.get(f"/s/pilot?PROLIFIC_PID={'2' * 24}").get_data(as_text=True)) or ""
    )
    no_id = stranger.client.post("/s/pilot/consent", data={"csrf_token": stranger.token, "choice": "accept"})
    assert no_id.status_code == 403  # a valid form with the id taken out
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StudySession)) == 0

    invited = Participant(app, "pilot", key)
    assert invited.enter(pid="P3").status_code == 302
    assert invited.go().status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StudySession)) == 1


def _arrive_with(base: str, ids: dict[str, str]) -> int:
    with httpx.Client(base_url=base, timeout=60) as client:
        token = csrf_token(client.get("/s/pilot").text)
        assert token
        return client.post(
            "/s/pilot/consent", data={"csrf_token": token, "choice": "accept", **ids}
        ).status_code


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_concurrent_arrivals_with_one_session_id_open_one_session(
    request: pytest.FixtureRequest, example_package: Path, serve: Any, database: str
) -> None:
    """Issue 31.2: one Prolific SESSION_ID (one submission) opens one session, whatever
    PROLIFIC_PID comes with it, even when the arrivals come at once: the check runs under
    the lists' lock, in start_session's transaction."""
    app: Flask = request.getfixturevalue("app" if database == "sqlite" else "pg_app")
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(example_package)]).exit_code == 0
    shared = "5e55101d" + "0" * 16
    arrivals = [
        {"PROLIFIC_PID": f"{i + 1:024x}", "STUDY_ID": "a" * 24, "SESSION_ID": shared} for i in range(20)
    ]
    with serve(app) as server, ThreadPoolExecutor(max_workers=20) as pool:
        codes = Counter(pool.map(lambda ids: _arrive_with(server.url, ids), arrivals))
    assert codes == {302: 1, 409: 19}, codes
    with app.app_context():
        assert db.session.scalars(select(StudySession.prolific_session_id)).all() == [shared]
