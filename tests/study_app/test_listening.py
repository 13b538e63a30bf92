"""The server decides whether a participant could have listened (issue 16.2).

A bot finished 156 s of audio in 1.3 s by sending ``plays: {id: 1}`` and never fetching
a clip. Now the server records when it served each trial and which bytes of each clip it
served to each session, and refuses an answer sooner than LISTEN_FACTOR x the trial's
audio, or before every clip was served in full: a bot that slept the ``wait_s`` the 425
used to announce, fetching one byte of each clip or none, was paid (issue 31.3). No test
here waits for the clock to prove that: the served time is moved back instead, except
where a real browser or a real bot must run at the pace of real audio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import expect
from sqlalchemy import func, select

from artifact_schemas import RESPONSES, AnswerKey, load_key, load_study, load_table
from study_app.db import db
from study_app.listening import listening_floor_s, merge_ranges
from study_app.models import Response, StudySession
from study_app.simulate import csrf_token
from tests.study_app.conftest import Participant
from tests.study_app.prolific_ids import prolific_ids

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


def test_answers_sooner_than_the_audio_are_refused(any_db_participant: Any, tmp_path: Path) -> None:
    # Both databases: on PostgreSQL the trial fetch marks the trial served, and the answer
    # reads the clips heard, in the statement that reads the session (participant.study_and_session).
    participant = any_db_participant
    app = participant.client.application
    new_participant = lambda: Participant(app, "pilot", participant.key)  # noqa: E731
    app.config["LISTEN_FACTOR"] = 0.9
    participant.enter(pid="L1")
    participant.post_stage("volume")
    trial = participant.trial()
    floor = _floor(app, trial)
    assert floor > 1  # a screening trial: three noise intervals
    forged = participant.answer(trial, listen=False)  # plays = 1 for every clip, at once
    assert forged.status_code == 425
    # The same words whatever is missing, and no number of seconds to sleep on (issue 31.3).
    assert forged.get_json() == {"error": "Please listen to every clip to the end before answering."}
    # A reload serves the same trial again; its clock keeps running from the first time.
    _move_served_back(app, floor / 2)
    assert participant.trial()["trial"]["id"] == trial["trial"]["id"]
    too_soon = participant.answer(trial)  # every clip fetched whole now, but too soon
    assert too_soon.status_code == 425 and "wait_s" not in too_soon.get_json()
    _move_served_back(app, floor / 2 + 0.2)
    assert participant.answer(trial).status_code == 200
    with app.app_context():
        stored = db.session.scalars(select(Response)).one()
        assert stored.served_at is not None and stored.clips_unfetched == 0

    # The next trial, its time up: clips never fetched, or one byte of each, are refused.
    nxt = participant.trial()
    _move_served_back(app, _floor(app, nxt) + 0.2)
    assert participant.answer(nxt, listen=False).status_code == 425
    for clip in (*nxt["trial"]["references"], *nxt["trial"]["candidates"]):
        assert participant.client.get(clip["url"], headers={"Range": "bytes=0-0"}).status_code == 206
    assert participant.answer(nxt, listen=False).status_code == 425
    assert participant.answer(nxt).status_code == 200  # fetched whole, as a player does
    out = tmp_path / "r.parquet"
    args = ["export", "pilot", "--format", "parquet", "--out", str(out)]
    assert app.test_cli_runner().invoke(args=args).exit_code == 0
    export = load_table(out, RESPONSES).sort_values("position")
    assert export["clips_unfetched"].tolist() == [0, 0]
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
        "SECRET_KEY": "listening-test key, 32 characters",
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


def _pass_volume(page: Any) -> None:
    """Play the test sound to its end: only then may the participant continue."""
    page.get_by_role("button", name="Test sound").click()
    proceed = page.get_by_role("button", name="The volume is comfortable, continue")
    expect(proceed).to_be_enabled(timeout=60_000)
    proceed.click()


def _screening_in_chromium(page: Any, url: str, trials: int) -> list[str]:
    """Consent, volume, then ``trials`` screening trials as a participant clicks them."""
    page.goto(f"{url}/s/pilot")
    page.get_by_role("button", name="I agree, start the study").click()
    _pass_volume(page)
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


# --------------------------------------------------------------------------- bytes served (issue 31.3)


def _coverage(app: Flask, clip_id: str) -> tuple[list[list[int]], bool]:
    """The byte ranges of ``clip_id`` served to the (only) session, and whether it is heard."""
    from study_app.models import ClipRequest

    with app.app_context():
        row = db.session.scalars(select(ClipRequest).where(ClipRequest.clip_id == clip_id)).one_or_none()
        return ([], False) if row is None else (row.served, row.heard_at is not None)


def _clips(app: Flask, trial: dict[str, Any]) -> list[dict[str, str]]:
    """The trial's clips, then three more of the session's list (any of which it may fetch)."""
    from study_app.models import Study
    from study_app.packages import package_view

    clips = [*trial["trial"]["references"], *trial["trial"]["candidates"]]
    url = clips[0]["url"]
    with app.app_context():
        study = db.session.scalars(select(Study)).one()
        sess = db.session.scalars(select(StudySession)).one()
        listed = sorted(package_view(study).list_clips[sess.trial_list.list_key] - {c["id"] for c in clips})
    return clips + [{"id": c, "url": url.replace(clips[0]["id"], c)} for c in listed[:3]]


def _listening_participant(participant: Any) -> dict[str, Any]:
    participant.enter(pid="B1")
    participant.post_stage("volume")
    return participant.trial()


def test_a_clip_is_heard_only_once_every_byte_of_it_was_served(
    study_app: tuple[Flask, AnswerKey], participant: Any, example_package: Path
) -> None:
    """send_file: what counts is what the response carries (its status and Content-Range)."""
    app, _ = study_app
    trial = _listening_participant(participant)
    clip = trial["trial"]["references"][0]
    url, cid = clip["url"], clip["id"]
    size = (example_package / load_study(example_package / "study.json").clips[cid].file).stat().st_size
    get = participant.client.get
    assert get(url, headers={"Range": "bytes=0-0"}).status_code == 206
    assert _coverage(app, cid) == ([[0, 1]], False)  # one byte is not the clip
    assert participant.client.head(url).status_code == 200  # a HEAD carries no bytes
    assert get(url, headers={"If-None-Match": f'"{cid}"'}).status_code == 304  # nor does a 304
    assert get(url, headers={"Range": "bytes=10-20,30-40"}).status_code == 416  # werkzeug: one range only
    assert get(url, headers={"Range": f"bytes={size}-"}).status_code == 416
    assert _coverage(app, cid) == ([[0, 1]], False)
    assert get(url, headers={"Range": "bytes=-100"}).status_code == 206  # suffix: the last 100
    assert get(url, headers={"Range": f"bytes=1-{size // 2}"}).status_code == 206
    assert _coverage(app, cid) == ([[0, size // 2 + 1], [size - 100, size]], False)
    part = get(url, headers={"Range": f"bytes={size // 3}-{size + 999}"})  # clamped to the file
    assert part.status_code == 206
    assert _coverage(app, cid) == ([[0, size]], True)
    # Whole in one go, another clip: no Range header, or the browser's open range.
    other, last = _clips(app, trial)[1:3]
    assert get(other["url"]).status_code == 200 and _coverage(app, other["id"])[1]
    assert (
        get(last["url"], headers={"Range": "bytes=0-"}).status_code == 206 and _coverage(app, last["id"])[1]
    )


def test_behind_nginx_the_ranges_the_request_asks_for_count(
    study_app: tuple[Flask, AnswerKey], participant: Any, example_package: Path
) -> None:
    """MEDIA_X_ACCEL_PREFIX: nginx sends the file, exactly the requested ranges; the app
    counts those, and nothing where nginx may send less (a 304, a Range it cannot parse)."""
    app, _ = study_app
    app.config["MEDIA_X_ACCEL_PREFIX"] = "/_audio"
    trial = _listening_participant(participant)
    clip = trial["trial"]["references"][0]
    url, cid = clip["url"], clip["id"]
    size = (example_package / load_study(example_package / "study.json").clips[cid].file).stat().st_size

    def fetch(range_header: str | None, **headers: str) -> None:
        sent = headers | ({"Range": range_header} if range_header else {})
        assert participant.client.get(url, headers=sent).headers["X-Accel-Redirect"]

    fetch("bytes=0-0")
    fetch("bytes=5-9, 100-")  # several ranges: nginx sends each (multipart)
    assert _coverage(app, cid) == ([[0, 1], [5, 10], [100, size]], False)
    for nothing in ("bytes=abc", "items=0-4", f"bytes={size}-", "bytes=-0"):
        fetch(nothing)
    fetch("bytes=1-4", **{"If-None-Match": f'"{cid}"'})
    fetch("bytes=1-4", **{"If-Modified-Since": "Wed, 01 Jan 2025 00:00:00 GMT"})
    participant.client.head(url, headers={"Range": "bytes=1-4"})
    assert _coverage(app, cid) == ([[0, 1], [5, 10], [100, size]], False)
    fetch(f"bytes=0-{size * 2}")
    assert _coverage(app, cid) == ([[0, size]], True)
    other, suffix = _clips(app, trial)[1:3]
    participant.client.get(other["url"])  # no Range header: the whole file
    assert _coverage(app, other["id"]) == ([[0, size_of(example_package, other["id"])]], True)
    participant.client.get(suffix["url"], headers={"Range": "bytes=-99999999"})  # more than the file
    assert _coverage(app, suffix["id"])[1]


def size_of(package: Path, clip_id: str) -> int:
    return (package / load_study(package / "study.json").clips[clip_id].file).stat().st_size


def test_parallel_range_requests_add_up_to_the_whole_clip(
    any_db_participant: Any, example_package: Path, serve: Any
) -> None:
    """A browser fetches a clip in pieces, some at once: no piece may be lost to a race
    (PostgreSQL: row lock; SQLite: the write lock), on either database."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    participant = any_db_participant
    app = participant.client.application
    trial = _listening_participant(participant)
    clips = _clips(app, trial)
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = participant.client.get_cookie(name)
    assert cookie is not None
    rng = random.Random(5)
    with serve(app) as server:
        jobs = []
        for clip in clips:
            size = size_of(example_package, clip["id"])
            cuts = sorted(rng.sample(range(1, size), 23))
            pieces = list(zip([0, *cuts], [*cuts, size], strict=True))
            # Overlapping neighbours, in random order.
            jobs += [(clip["url"], max(0, a - 3), b) for a, b in pieces]
        rng.shuffle(jobs)

        def fetch(job: tuple[str, int, int]) -> int:
            url, start, stop = job
            headers = {"Cookie": f"{name}={cookie.value}", "Range": f"bytes={start}-{stop - 1}"}
            return httpx.get(server.url + url, headers=headers, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(fetch, jobs)) == {206}
    for clip in clips:
        assert _coverage(app, clip["id"]) == ([[0, size_of(example_package, clip["id"])]], True)


def test_bots_that_fetch_one_byte_of_each_clip_or_none_get_no_completion_code(
    study_app: tuple[Flask, AnswerKey], example_package: Path, serve: Any
) -> None:
    """Each waits out every floor (the audio's length and more) and sends again: refused
    every time, so it never reaches the end page with its code. A bot that fetches every
    clip whole, as a browser's player does, finishes under the same settings."""
    from concurrent.futures import ThreadPoolExecutor

    from study_app.models import COMPLETED
    from study_app.simulate import BotConfig, run_bots

    app, key = study_app
    app.config["LISTEN_FACTOR"] = 0.05
    manifest = load_study(example_package / "study.json")
    modes = {"first_byte": 1, "none": 2, "full": 3}
    with serve(app) as server, ThreadPoolExecutor(max_workers=3) as pool:
        runs = {
            mode: pool.submit(
                run_bots,
                server.url,
                "pilot",
                manifest,
                key,
                BotConfig(participants=1, seed=seed, listen=mode),
            )
            for mode, seed in modes.items()
        }
        results = {mode: run.result()[0] for mode, run in runs.items()}
    assert results["first_byte"].status == results["none"].status == "refused 425"
    assert results["full"].status == "completed"
    assert not results["first_byte"].acked and not results["none"].acked
    with app.app_context():
        statuses = sorted(s.status for s in db.session.scalars(select(StudySession)))
        assert statuses == sorted(["active", "active", COMPLETED])
        n = db.session.scalar(select(func.count()).select_from(Response))
        assert n == len(results["full"].acked)


def test_chromium_through_a_whole_session_is_never_refused_for_its_clips(
    app: Flask, example_package: Path, serve: Any, browser: Any
) -> None:
    """Every trial, a reload mid-trial (its clips then come from the browser's cache) and a
    second session in the same browser (the first one's clips are in that cache too):
    with the served-in-full check on (LISTEN_FACTOR > 0; audio at 16x, so the time floor
    is small), no answer is refused, and every answer has all its clips served in full."""
    app.config["LISTEN_FACTOR"] = 0.01
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 100
    key = load_key(example_package / "key.json")
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(example_package)]).exit_code == 0
    context = browser.new_context()
    context.add_init_script(FAST_AUDIO)
    page = context.new_page()
    with serve(app) as server:
        for name in ("CHROME1", "CHROME2"):
            _whole_session_in_chromium(page, server.url, prolific_ids(name), key)
            context.clear_cookies()  # a new session in this browser; its HTTP cache stays
    context.close()
    with app.app_context():
        sessions = db.session.scalars(select(StudySession)).all()
        assert [s.status for s in sessions] == ["completed", "completed"]
        unheard = db.session.scalars(select(Response.clips_unfetched)).all()
        assert len(unheard) > 2 * 15 and set(unheard) == {0}


def _whole_session_in_chromium(page: Any, url: str, ids: dict[str, str], key: AnswerKey) -> None:
    page.goto(f"{url}/s/pilot?" + "&".join(f"{k}={v}" for k, v in ids.items()))
    page.get_by_role("button", name="I agree, start the study").click()
    _pass_volume(page)
    for step in range(200):
        data = page.request.get(f"{url}/api/s/pilot/trial").json()
        if data["stage"] == "instructions":
            page.get_by_role("button", name="Begin").click()
            continue
        if "trial" not in data:
            break
        tid = data["trial"]["id"]
        expect(page.locator("#runner")).to_have_attribute("data-trial", tid)
        if step == 5:  # a reload mid-trial: the same trial, its clips from the cache
            page.reload()
            expect(page.locator("#runner")).to_have_attribute("data-trial", tid)
        plays = page.locator("#references button.play, #candidates button.play")
        for i in range(plays.count()):
            plays.nth(i).click()
            expect(page.locator(".clip.played")).to_have_count(i + 1)
        options = {o["id"]: o["text"] for o in data["trial"]["options"]}
        if options:  # the right answer where there is one (screening must be passed)
            right = key.trials[tid].correct_option or next(iter(options))
            page.locator("#options button", has_text=options[right]).first.click()
        if data["trial"]["rating"]:
            page.locator("#rating button").first.click()
        if data["trial"]["confidence"]:
            page.locator("#confidence button").first.click()
        page.locator("#submit").click()
        for _ in range(200):
            if page.request.get(f"{url}/api/s/pilot/trial").json().get("trial", {}).get("id") != tid:
                break
            assert "listen to every clip" not in page.locator("#status").inner_text(), tid
            page.wait_for_timeout(50)
        else:
            raise AssertionError(f"trial {tid} was never recorded")
    page.get_by_label("Headphones").check()
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#code")).to_be_visible()


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), max_size=24))
def test_merged_ranges_cover_exactly_the_bytes_served(pairs: list[tuple[int, int]]) -> None:
    merged = merge_ranges(pairs)
    assert {i for a, b in merged for i in range(a, b)} == {i for a, b in pairs for i in range(a, b)}
    assert all(a < b for a, b in merged)
    assert all(m[1] < n[0] for m, n in pairwise(merged))  # disjoint, not touching
    assert merge_ranges([*merged, *pairs]) == merged
