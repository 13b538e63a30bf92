"""A researcher in Chromium: logs in, watches a bot finish on the live dashboard, downloads the export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
from flask import Flask
from playwright.sync_api import expect

from artifact_schemas import AnswerKey, load_study
from study_app.simulate import BotConfig, run_bots


def test_dashboard_updates_live_and_export_downloads(
    study_app: tuple[Flask, AnswerKey],
    example_package: Path,
    serve: Any,
    browser: Any,
    tmp_path: Path,
    screenshot: Any,
) -> None:
    app, key = study_app
    result = app.test_cli_runner().invoke(
        args=["create-admin", "alice", "--password-stdin"], input="a long password\n"
    )
    assert result.exit_code == 0
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    with serve(app) as server:
        page.goto(f"{server.url}/admin/s/pilot")
        assert "/admin/login" in page.url  # not logged in yet
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("a long password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Sessions per list")).to_be_visible()
        completed = page.locator('[data-stat="totals.completed"]')
        expect(completed).to_have_text("0")
        expect(page.locator("#pilot-mark")).to_be_hidden()  # no session yet: nothing to mark
        manifest = load_study(example_package / "study.json")
        bots = run_bots(server.url, "pilot", manifest, key, BotConfig(participants=1, accuracy=1.0))
        assert bots[0].status == "completed"
        # The page is not reloaded: the numbers arrive through the 5-second refresh.
        expect(completed).to_have_text("1")
        expect(page.locator("#recent tbody tr")).to_have_count(1)
        expect(page.locator("#per-feature tbody tr").first).to_be_visible()  # refreshed in place too
        # The bot is marked as one and kept out of the durations (issue 37: "0.0 min" with
        # bots); lists carry names; the chart has its axes: counts 0 to the peak, and times.
        expect(page.locator("#recent tbody td").nth(1)).to_have_text("bot")
        expect(page.locator('[data-stat="totals.bots"]')).to_have_text("1")
        # Only a bot so far: the refresh puts up the pilot mark (issue 37).
        expect(page.locator("#pilot-mark")).to_be_visible()
        none = "\u2013"  # no duration: only a bot finished
        expect(page.locator('[data-stat="median_duration_s"]')).to_have_text(none)
        expect(page.locator("#recent tbody td").nth(2)).to_contain_text("List ")
        ticks = page.locator("#timeline text.tick")
        expect(ticks).to_have_count(5)
        peak = int(ticks.nth(1).text_content())
        assert peak >= 1 and page.locator("#timeline rect").count() == 24
        assert re.fullmatch(r"\d\d:\d\d", ticks.nth(4).text_content() or ""), ticks.nth(4).text_content()
        screenshot(page, "admin-dashboard")
        # Readable on a phone: the page is no wider than the screen (tables scroll inside).
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "admin-dashboard-390")
        page.set_viewport_size({"width": 1280, "height": 800})
        assert page.url.endswith("/admin/s/pilot")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download responses (CSV)").click()
        path = tmp_path / "export.csv"
        download.value.save_as(path)
    context.close()
    frame = pd.read_csv(path)
    assert len(frame) == len(bots[0].acked) and frame["session_status"].eq("completed").all()
