"""Issue 36: Chromium completes MUSHRA and slider trials, on a desktop and on a phone.

The study is built from one's own clips (stimuli_builder.example.write_example_stimuli);
the page must keep every slider unset until moved, open a slider only once its clip has
played through, and store exactly the values the participant set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select

from artifact_schemas import load_key, load_study
from study_app.db import db
from study_app.models import Response, StudySession, Trial
from tests.study_app.test_browser_session import FAST_AUDIO, _wait_until_answered
from tests.study_app.test_own_stimuli_study import SLUG


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_chromium_rates_mushra_and_slider_trials(
    app: Flask,
    own_package: Path,
    serve: Any,
    browser: Any,
    screenshot: Any,
    accessible: Any,
    width: int,
    height: int,
) -> None:
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(own_package)]).exit_code == 0
    key = load_key(own_package / "key.json")
    manifest = load_study(own_package / "study.json")
    texts = {t.id: {o.id: o.text for o in t.options} for t in manifest.trials}
    phone = width < 500
    viewport = {"width": width, "height": height}
    context = browser.new_context(viewport=viewport, is_mobile=phone, has_touch=phone)
    context.add_init_script(FAST_AUDIO)
    page = context.new_page()
    set_values: dict[str, dict[str, int]] = {}
    chosen: dict[str, str | None] = {}
    reloaded: list[str] = []
    with serve(app) as server:
        trial_url = f"{server.url}/api/s/{SLUG}/trial"
        page.goto(f"{server.url}/s/{SLUG}")
        page.get_by_role("button", name="I agree, start the study").click()
        page.get_by_role("button", name="Test sound").click()
        page.get_by_role("button", name="The volume is comfortable, continue").click()
        for _ in range(40):
            data = page.request.get(trial_url).json()
            if data["stage"] == "instructions":
                page.get_by_role("button", name="Begin").click()
                continue
            if "trial" not in data:
                break
            t = data["trial"]
            expect(page.locator("#runner")).to_have_attribute("data-trial", t["id"])
            plays = page.locator("#runner button.play")
            if not t["sliders"]:  # the headphone check and ABX: the right answer
                if t["kind"] == "abx":
                    names = [b.get_attribute("aria-label") for b in plays.all()]
                    assert names == ["Play A", "Play B", "Play X"]  # named for what they are
                    titles = page.locator("#runner .group-title")
                    expect(titles).to_have_text(["A and B", "X: one of the two"])
                for i in range(plays.count()):
                    plays.nth(i).click()
                    expect(page.locator("#runner .clip.played")).to_have_count(i + 1)
                right = texts[t["id"]][key.trials[t["id"]].correct_option]
                page.get_by_role("button", name=right, exact=True).click()
                if t["kind"] == "abx":
                    chosen[t["id"]] = key.trials[t["id"]].correct_option
                    if len(chosen) == 1:  # axe-core: no serious violation (issue 37)
                        accessible(page, f"abx at {width} px")
                        screenshot(page, f"own-abx-{width}")
                page.locator("#submit").click()
                _wait_until_answered(page, trial_url, t["id"])
                continue
            sliders = page.locator("#candidates input.slider")
            expect(sliders).to_have_count(len(t["candidates"]))
            values = page.locator("#candidates .slider-value")
            # Unset until moved, and closed until the clip has played through.
            expect(values).to_have_text(["\u2013"] * len(t["candidates"]))  # an en dash
            assert all(s.is_disabled() for s in sliders.all())
            if t["kind"] == "mushra":
                reference = page.locator("#references button.play")
                expect(reference).to_have_attribute("aria-label", "Play Reference")
                expect(page.locator("#candidates .group-title")).to_have_text("Clips to rate")
                expect(page.locator("#candidates .slider-labels").first).to_contain_text("Excellent")
            mine: dict[str, int] = {}
            for i, clip in enumerate(t["candidates"]):
                row = page.locator("#candidates .slider-row").nth(i)
                row.locator("button.play").click()
                expect(row.locator(".clip.played")).to_have_count(1)
                slider = row.locator("input.slider")
                expect(slider).to_be_enabled()
                # The next clip's slider is still closed: it has not been heard.
                if i + 1 < len(t["candidates"]):
                    assert sliders.nth(i + 1).is_disabled()
                expect(page.locator("#submit")).to_be_disabled()  # not every slider moved yet
                if phone and i == 0:  # scrolling past a slider is no rating
                    _swipe(context, page, slider)
                    expect(row.locator(".slider-value")).to_have_text("\u2013")
                if i % 2 == 0:  # the keyboard: arrows from the middle
                    slider.focus()
                    for _ in range(i + 3):
                        page.keyboard.press("ArrowRight")
                    mine[clip["id"]] = 50 + i + 3
                else:  # a click (a tap on the phone) at the left quarter of the track
                    slider.scroll_into_view_if_needed()  # taps and clicks take the viewport's coordinates
                    box = slider.bounding_box()
                    assert box is not None
                    x, y = box["x"] + box["width"] / 4, box["y"] + box["height"] / 2
                    if phone:
                        page.touchscreen.tap(x, y)
                    else:
                        page.mouse.click(x, y)
                    mine[clip["id"]] = int(slider.input_value())
                    assert 15 <= mine[clip["id"]] <= 35
                expect(row.locator(".slider-value")).to_have_text(str(mine[clip["id"]]))
            if t["references"]:  # the open reference too must be heard before the answer goes
                expect(page.locator("#hint")).to_have_text("Listen to every clip to the end to answer.")
                expect(page.locator("#submit")).to_be_disabled()
                page.locator("#references button.play").click()
                expect(page.locator("#references .clip.played")).to_have_count(1)
            expect(page.locator("#hint")).to_have_text("")
            expect(page.locator("#submit")).to_be_enabled()
            if phone:  # nor does it change a rating given
                first = page.locator("#candidates .slider-row").first
                _swipe(context, page, first.locator("input.slider"))
                expect(first.locator(".slider-value")).to_have_text(str(mine[t["candidates"][0]["id"]]))
            assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing off screen
            if not reloaded and t["kind"] == "mushra":  # a reload keeps the values set (issue 36)
                reloaded.append(t["id"])
                page.reload()
                expect(page.locator("#runner")).to_have_attribute("data-trial", t["id"])
                expect(values).to_have_text([str(mine[c["id"]]) for c in t["candidates"]])
                expect(page.locator("#submit")).to_be_enabled()
            if not any(_kind(manifest, k) == t["kind"] for k in set_values):  # one picture per kind
                accessible(page, f"{t['kind']} at {width} px")
                screenshot(page, f"own-{t['kind']}-{width}")
            set_values[t["id"]] = mine
            page.locator("#submit").click()
            _wait_until_answered(page, trial_url, t["id"])
        expect(page.get_by_text("Thank you")).to_be_visible()
    context.close()
    assert {_kind(manifest, k) for k in set_values} == {"mushra", "slider"} and len(chosen) == 6
    with app.app_context():
        assert db.session.scalars(select(StudySession.status)).one() == "completed"
        stored = dict(
            db.session.execute(
                select(Trial.trial_key, Response.slider_values)
                .join(Response)
                .where(Response.slider_values.is_not(None))
            ).all()
        )
        answers = dict(
            db.session.execute(
                select(Trial.trial_key, Response.answer).join(Response).where(Trial.kind == "abx")
            ).all()
        )
    assert stored == set_values  # what the page showed is what was stored
    assert answers == chosen


def _swipe(context: Any, page: Any, slider: Any) -> None:
    """A finger put on the slider's right side that moves 200 px up (or down, near the top
    of the screen, to stay on it): a scroll, by touch."""
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    x, y = box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2
    way = -20 if y > 300 else 20
    cdp = context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for step in range(1, 11):
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y + way * step}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_timeout(100)


def _kind(manifest: Any, trial_id: str) -> str:
    return next(t.kind for t in manifest.trials if t.id == trial_id)
