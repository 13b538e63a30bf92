"""The server decides whether a participant could have listened (issue 16.2).

A bot finished 156 s of audio in 1.3 s by sending ``plays: {id: 1}`` and never fetching
a clip. Now the server records when it served each trial and which clips each session
fetched, and refuses an answer sooner than LISTEN_FACTOR x the trial's audio. No test here
waits for the clock to prove that: the served time is moved back instead, except where a
real browser or a real bot on gunicorn must run at the pace of real audio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import func, select

from artifact_schemas import RESPONSES, AnswerKey, load_study, load_table
from study_app.db import db
from study_app.models import Response, StudySession
from study_app.sessions import listening_floor_s
from study_app.simulate import csrf_token

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _move_served_back(app: Flask, seconds: float) -> None:
    """As if ``seconds`` had passed since the current trial was served."""
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        assert sess.served_at is not None
        sess.served_at = sess.served_at - timedelta(seconds=seconds)
        db.session.commit()


def _floor(app: Flask, trial: dict[str, Any]) -> float:
    from study_app.models import Study
    from study_app.packages import package_view

    with app.app_context():
        study = db.session.scalars(select(Study)).one()
        public = package_view(study).public[trial["trial"]["id"]]
        return listening_floor_s(study, public)


def test_answers_sooner_than_the_audio_are_refused(
    study_app: tuple[Flask, AnswerKey], participant: Any, new_participant: Any, tmp_path: Path
) -> None:
    app, _ = study_app
    app.config["LISTEN_FACTOR"] = 0.9
    participant.enter(pid="L1")
    participant.post_stage("volume")
    trial = participant.trial()
    floor = _floor(app, trial)
    assert floor > 1  # a screening trial: three noise intervals
    forged = participant.answer(trial)  # plays = 1 for every clip, at once
    assert forged.status_code == 425
    body = forged.get_json()
    assert "listen to every clip" in body["error"] and 0 < body["wait_s"] <= floor
    # A reload serves the same trial again; its clock keeps running from the first time.
    _move_served_back(app, floor / 2)
    assert participant.trial()["trial"]["id"] == trial["trial"]["id"]
    assert participant.answer(trial).status_code == 425
    participant.client.get(trial["trial"]["references"][0]["url"])  # the browser fetches its clip
    _move_served_back(app, floor / 2 + 0.2)
    assert participant.answer(trial).status_code == 200
    with app.app_context():
        stored = db.session.scalars(select(Response)).one()
        assert stored.served_at is not None and stored.clips_unfetched == 0

    # The next trial's clips were never fetched: accepted once its time is up, and flagged.
    nxt = participant.trial()
    _move_served_back(app, _floor(app, nxt) + 0.2)
    assert participant.answer(nxt).status_code == 200
    out = tmp_path / "r.parquet"
    args = ["export", "pilot", "--format", "parquet", "--out", str(out)]
    assert app.test_cli_runner().invoke(args=args).exit_code == 0
    export = load_table(out, RESPONSES).sort_values("position")
    n_clips = len({c["id"] for c in (*nxt["trial"]["references"], *nxt["trial"]["candidates"])})
    assert export["clips_unfetched"].tolist() == [0, n_clips]
    assert (export["answer_after_s"] >= 0.9 * export["audio_s"]).all() and export["served_ts"].notna().all()

    # A trial id learned elsewhere, answered without ever loading the trial: refused.
    other = new_participant()
    other.enter(pid="L2")
    other.post_stage("volume")
    with app.app_context():
        sess = db.session.scalars(select(StudySession).where(StudySession.id != 1)).first()
        assert sess is not None and sess.served_at is None
    blind = {"trial": {**trial["trial"]}, "stage": "screening"}
    assert other.answer(blind).status_code in (409, 425)


def test_a_forging_bot_on_gunicorn_and_postgres_is_refused_every_time(
    postgres_database: str, example_package: Path, port: Any, wait_for: Any
) -> None:
    """Plays forged, answers 0-1 s after each serve: every answer refused, nothing stored."""
    env = {
        **os.environ,
        "DATABASE_URL": postgres_database,
        "SECRET_KEY": "listening-test",
        "LISTEN_FACTOR": "0.9",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_ACCESSLOG": "/dev/null",
    }
    for args in (["init-db"], ["import", str(example_package)]):
        subprocess.run([BIN / "study-app", *args], env=env, check=True, capture_output=True)
    app_port = port()
    gunicorn = subprocess.Popen(
        [BIN / "gunicorn", "-c", ROOT / "deploy" / "gunicorn.conf.py", "study_app:create_app()"],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{app_port}"},
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{app_port}"
    statuses = []
    try:
        wait_for(f"{url}/api/health")
        with httpx.Client(base_url=url, timeout=30) as bot:
            token = csrf_token(bot.get("/s/pilot").text)
            assert (
                bot.post("/s/pilot/consent", data={"csrf_token": token, "choice": "accept"}).status_code
                == 302
            )
            token = csrf_token(bot.get("/s/pilot/go").text)
            bot.post("/s/pilot/volume", data={"csrf_token": token})
            token = csrf_token(bot.get("/s/pilot/go").text)
            for attempt in range(4):
                trial = bot.get("/api/s/pilot/trial").json()["trial"]
                time.sleep(attempt % 2)  # at once, then a second after the (first) serve
                clips = [c["id"] for c in (*trial["references"], *trial["candidates"])]
                answer = {
                    "idempotency_key": f"forged{attempt:04d}x",
                    "trial_id": trial["id"],
                    "rt_ms": 3000,
                    "plays": {c: 1 for c in clips},
                    "answer": trial["options"][0]["id"],
                }
                response = bot.post("/api/s/pilot/answer", json=answer, headers={"X-CSRFToken": token})
                statuses.append(response.status_code)
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
    assert statuses == [425] * 4
    import psycopg

    with psycopg.connect(postgres_database.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT count(*) FROM response").fetchone() == (0,)


FAST_AUDIO = """
const play = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () { this.playbackRate = 16; return play.call(this); };
"""


def _screening_in_chromium(page: Any, url: str, trials: int) -> list[str]:
    """Consent, volume, then ``trials`` screening trials as a participant clicks them."""
    page.goto(f"{url}/s/pilot")
    page.get_by_role("button", name="I agree, start the study").click()
    page.get_by_role("button", name="The volume is comfortable, continue").click()
    seen = []
    for _ in range(trials):
        tid = page.request.get(f"{url}/api/s/pilot/trial").json()["trial"]["id"]
        expect(page.locator("#runner")).to_have_attribute("data-trial", tid)
        plays = page.locator("#references button.play, #candidates button.play")
        for i in range(plays.count()):
            plays.nth(i).click()
            expect(page.locator(".clip.played")).to_have_count(i + 1)
        page.locator("#options button").first.click()
        page.locator("#submit").click()
        for _ in range(100):  # until the server moved on, or said no
            if page.request.get(f"{url}/api/s/pilot/trial").json().get("trial", {}).get("id") != tid:
                break
            if "listen to every clip" in page.locator("#status").inner_text():
                break
            page.wait_for_timeout(100)
        seen.append(page.locator("#status").inner_text())
    return seen


def test_chromium_listening_normally_is_never_refused(
    app: Flask, example_package: Path, serve: Any, browser: Any
) -> None:
    app.config["LISTEN_FACTOR"] = 0.9
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(example_package)]).exit_code == 0
    with serve(app) as server:
        normal = browser.new_context()
        messages = _screening_in_chromium(normal.new_page(), server.url, trials=2)
        normal.close()
        assert not any("listen" in m for m in messages), messages
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Response)) == 2
        # The same page with its audio played at 16x speed finishes each clip early: refused.
        fast = browser.new_context()
        fast.add_init_script(FAST_AUDIO)
        messages = _screening_in_chromium(fast.new_page(), server.url, trials=1)
        fast.close()
    assert messages == ["Please listen to every clip to the end before answering."]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Response)) == 2
    manifest = load_study(example_package / "study.json")
    assert manifest.screening is not None
