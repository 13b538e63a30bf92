"""The documented HTTPS deployment, in a real browser: Chromium through the TLS nginx site.

nginx with a certificate made here, gunicorn with the deploy config on PostgreSQL,
``TRUSTED_PROXIES=1`` and Secure cookies, the study package as ``stimuli-builder
build`` left it. A participant consents, answers every trial and gets the completion
code; a researcher logs in and downloads the export. Over TLS every POST was refused
before (issue 31.1): Flask-WTF's referrer check against ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from playwright.sync_api import expect

from artifact_schemas import load_key

BIN = Path(sys.executable).parent

# Clips play at 16x (the app is unchanged; only the browser's clock is faster).
FAST_AUDIO = """
const play = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () { this.playbackRate = 16; return play.call(this); };
"""


def _answer_every_trial(page: Any, base: str, key: Any) -> None:
    """Play each clip, pick the key's answer (or the first option), rate 4, submit."""
    api = f"{base}/api/s/demo/trial"
    for _ in range(100):
        state = page.request.get(api).json()
        if state["stage"] == "instructions":
            page.get_by_role("button", name="Begin").click()
            expect(page.locator("#runner")).to_be_visible()
            continue
        if "trial" not in state:
            return
        trial = state["trial"]
        expect(page.locator("#runner")).to_have_attribute("data-trial", trial["id"])
        plays = page.locator("#references button.play, #candidates button.play")
        for i in range(plays.count()):
            plays.nth(i).click()
            expect(page.locator(".clip.played")).to_have_count(i + 1)
        if trial["options"]:
            answer = key.trials[trial["id"]].correct_option or trial["options"][0]["id"]
            text = next(o["text"] for o in trial["options"] if o["id"] == answer)
            page.get_by_role("button", name=text, exact=True).first.click()
        if trial["rating"]:
            page.locator("#rating button", has_text="4").click()
        if trial["confidence"]:
            page.locator("#confidence button", has_text="5").click()
        page.locator("#submit").click()
        for _ in range(400):  # until the server has moved on (the page posts in the background)
            if page.request.get(api).json().get("trial", {}).get("id") != trial["id"]:
                break
            page.wait_for_timeout(50)
        else:
            raise AssertionError(
                f"trial {trial['id']} never stored: {page.locator('#status').inner_text()!r}"
            )
    raise AssertionError("the session never reached its questionnaire")


def test_tls_site_runs_a_whole_session_and_admin_export(
    production_stack: Any, served_demo: Path, browser: Any, tmp_path: Path
) -> None:
    env = {
        "SECRET_KEY": "tls test secret, long enough to be real",
        "SESSION_COOKIE_SECURE": "1",
        # The browser's clock runs 16x; the floor scales with it (the check stays on).
        "LISTEN_FACTOR": "0.02",
        "GUNICORN_WORKERS": "2",
    }
    refused: list[str] = []
    with production_stack(served_demo, env, tls=True) as stack:
        subprocess.run(
            [BIN / "study-app", "create-admin", "alice", "--password-stdin"],
            env=stack.env,
            input="a long password\n",
            text=True,
            check=True,
            capture_output=True,
        )
        base = stack.url
        # One copy of each security header, HSTS under TLS, no nginx version (issue 31.7).
        headers = stack.client.get("/s/demo").headers
        for name in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
            assert len(headers.get_list(name)) == 1, (name, headers.get_list(name))
        assert "max-age" in headers["Strict-Transport-Security"] and headers["Server"] == "nginx"

        context = browser.new_context(ignore_https_errors=True, accept_downloads=True)
        context.add_init_script(FAST_AUDIO)
        page = context.new_page()
        page.on(
            "response",
            lambda r: refused.append(f"{r.status} {r.url}") if r.status in (400, 403) else None,
        )
        pid = "5f0c3a1e2b4d6f8a9c0e1d2b"  # Prolific's 24-hex id format
        page.goto(f"{base}/s/demo?PROLIFIC_PID={pid}&STUDY_ID={'a' * 24}&SESSION_ID={'b' * 24}")
        page.get_by_role("button", name="I agree, start the study").click()
        page.get_by_role("button", name="Test sound").click()
        proceed = page.get_by_role("button", name="The volume is comfortable, continue")
        expect(proceed).to_be_enabled(timeout=60_000)  # once the test sound has played to its end
        proceed.click()
        _answer_every_trial(page, base, load_key(served_demo / "key.json"))
        page.get_by_label("Over-ear headphones").check()
        page.get_by_role("button", name="Finish").click()
        expect(page.locator("#code")).not_to_be_empty()
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["session"]["secure"]

        page.goto(f"{base}/admin/s/demo")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("a long password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Sessions per list")).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download responses (CSV)").click()
        path = tmp_path / "export.csv"
        download.value.save_as(path)
        context.close()
    assert refused == []
    frame = pd.read_csv(path)
    assert len(frame) > 20 and frame["session_status"].eq("completed").all()
