"""Issue 37: the demo study in German, completed in Chromium on a phone-sized screen
(390 x 844), leaves no English on any page, no serious accessibility violation (axe-core),
and every scale on one line.

The package is built from examples/demo-study/study.de.toml (the demo's design, German
texts and label names). Every page the participant meets is scanned, its visible and
hidden text, accessible names and title, for the English of both catalogs (what the app
and the builder say) and for the labelers' English words; the browser itself asks for
English, so nothing German comes from the browser's preference. The English pages keep
their words (the other browser tests), and a page of no study follows Accept-Language.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import select

from study_app.db import db
from study_app.models import Event, Response, Trial
from tests.study_app.conftest import Participant, import_package
from tests.study_app.test_browser_session import FAST_AUDIO, _wait_until_answered
from tests.test_translations import catalog

ROOT = Path(__file__).resolve().parents[2]
GERMAN_DEMO = ROOT / "examples" / "demo-study" / "study.de.toml"
# Everything a person or a screen reader meets on the page: text (hidden too), names, title.
PAGE_TEXT = """() => {
  const parts = [document.title, document.body.innerText, document.body.textContent];
  const names = ["aria-label", "aria-valuetext", "title", "alt", "placeholder"];
  for (const node of document.querySelectorAll(names.map((name) => `[${name}]`).join(", "))) {
    for (const name of names) {
      if (node.hasAttribute(name)) parts.push(node.getAttribute(name));
    }
  }
  return parts.join("\\n");
}"""


@pytest.fixture(scope="module")
def german_package(example_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stimuli_builder.build import build_package

    out = tmp_path_factory.mktemp("demo-de") / "demo"
    build_package(GERMAN_DEMO, example_run, out)
    return out


def english_phrases() -> re.Pattern[str]:
    """What must not be left in English: each catalog text that German says otherwise, cut
    at its placeholders and tags, and each label word that German names otherwise."""
    pieces: set[str] = set()
    for package in ("study_app", "stimuli_builder"):
        for english, german in catalog(package, "de", "po").items():
            if english != german:
                pieces |= {p.strip(" .,:?!—…“”") for p in re.split(r"\{\w+\}|%\(\w+\)s|</?\w+>", english)}
    shown_as = tomllib.loads(GERMAN_DEMO.read_text())["label_validation"]["shown_as"]
    pieces |= {label for label, german in shown_as.items() if label.casefold() != german.casefold()}
    # Whole words, case as written: "Test" and "Bass" are German too, but not "Check" or "piano".
    words = sorted((p for p in pieces if len(p) > 1), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, words)) + r")(?![\w-])")


def test_chromium_completes_the_german_demo_with_no_english_left(
    app: Flask, german_package: Path, serve: Any, browser: Any, screenshot: Any, accessible: Any
) -> None:
    key, manifest = import_package(app, german_package)
    assert manifest.language == "de"
    options = {t.id: {o.id: o.text for o in t.options} for t in manifest.trials}
    english = english_phrases()
    pages: list[str] = []

    def scan(page: Any, where: str) -> None:
        text = page.evaluate(PAGE_TEXT)
        left = sorted(set(english.findall(text)))
        assert not left, f"{where}: English left on the page: {left}"
        assert page.locator("html").get_attribute("lang") == "de"
        if where.split(",")[0] not in {p.split(",")[0] for p in pages}:  # each kind of page once
            accessible(page, where)
        pages.append(where)

    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844})
    context.add_init_script(FAST_AUDIO)
    page = context.new_page()
    with serve(app) as server:
        page.goto(f"{server.url}/s/demo")
        expect(page.get_by_role("heading", name="Einwilligung")).to_be_visible()
        scan(page, "consent")
        screenshot(page, "phone-de-1-consent")
        page.get_by_role("button", name="Ich stimme zu, Studie beginnen").click()
        proceed = page.get_by_role("button", name="Die Lautstärke ist angenehm, weiter")
        expect(proceed).to_be_disabled()
        scan(page, "volume")
        page.get_by_role("button", name="Testklang abspielen").click()
        expect(proceed).to_be_enabled(timeout=30_000)
        scan(page, "volume, played")
        screenshot(page, "phone-de-2-volume")
        proceed.click()
        kinds: set[str] = set()
        reported: list[str] = []
        for _step in range(100):
            state = page.request.get(f"{server.url}/api/s/demo/trial").json()
            if state["stage"] == "instructions":
                begin = page.get_by_role("button", name="Beginnen")
                expect(begin).to_be_visible()
                scan(page, "instructions")
                screenshot(page, "phone-de-4-instructions")
                begin.click()
                continue
            if "trial" not in state:
                break
            trial = state["trial"]
            tid = trial["id"]
            expect(page.locator("#runner")).to_have_attribute("data-trial", tid)
            phase_word = {"main": "Aufgabe", "practice": "Übung", "screening": "Test"}[trial["phase"]]
            expect(page.locator("#step")).to_have_text(f"{phase_word} {state['step']} von {state['steps']}")
            kind = f"{trial['phase']}-{trial['kind']}"
            scan(page, f"{kind} before listening")
            plays = page.locator("#references button.play, #candidates button.play")
            for i in range(plays.count()):
                plays.nth(i).click()
                expect(page.locator(".clip.played")).to_have_count(i + 1)
            if trial["phase"] == "main" and not reported:  # "Problem with the audio?", once
                page.get_by_text("Problem mit dem Ton?").click()
                page.get_by_label("Was stimmt nicht?").select_option("level")
                page.get_by_label("Erzählen Sie uns mehr (freiwillig)").fill("viel zu laut")
                page.get_by_role("button", name="Meldung senden").click()
                expect(page.locator("#problem-sent")).to_be_visible()
                scan(page, "problem report")
                reported.append(tid)
                # The optional comment box (study.trial_comments, issue 36) goes with the answer.
                page.get_by_label("Ihr Kommentar zu dieser Aufgabe (freiwillig)").fill("  klingt wie Regen  ")
            tk = key.trials[tid]
            if trial["options"]:
                answer = tk.correct_option or next(iter(options[tid]))
                page.get_by_role("button", name=options[tid][answer], exact=True).first.click()
            if trial["rating"]:
                page.locator("#rating button", has_text="4").click()
            if trial["confidence"]:
                page.locator("#confidence button", has_text="5").click()
            # Every scale on one line, at 390 px and with German's longer labels.
            for scale in page.locator(".scale-row").all():
                tops = {round(b.bounding_box()["y"]) for b in scale.locator("button").all()}
                assert len(tops) == 1, f"{kind}: a scale wraps onto {len(tops)} lines"
            if kind not in kinds:  # each layout once, answered, in German
                kinds.add(kind)
                scan(page, f"{kind} answered")
                number = {"screening": 3, "practice": 5}.get(trial["phase"], 6)
                screenshot(page, f"phone-de-{number}-{kind}")
            page.locator("#submit").click()
            if trial["phase"] == "practice":  # the feedback, shown for a moment
                expect(page.locator("#feedback")).to_have_text(re.compile(r"^(Richtig!|Nicht ganz)"))
                scan(page, "practice feedback")
            _wait_until_answered(page, f"{server.url}/api/s/demo/trial", tid)
        expect(page.get_by_role("heading", name="Noch ein paar letzte Fragen")).to_be_visible()
        page.get_by_label("Over-Ear-Kopfhörer").check()
        scan(page, "questionnaire")
        screenshot(page, "phone-de-7-questionnaire")
        page.get_by_role("button", name="Abschließen").click()
        expect(page.get_by_role("heading", name="Vielen Dank!")).to_be_visible()
        scan(page, "done")
        screenshot(page, "phone-de-8-done")
    context.close()
    with app.app_context():
        sent = db.session.scalars(select(Event.data).where(Event.kind == "clip_problem")).all()
    assert sent == [{"trial": reported[0], "reason": "level", "text": "viel zu laut"}]
    with app.app_context():
        comments = db.session.execute(select(Trial.trial_key, Response.comment).join(Trial)).all()
    # Written under one trial, stored with that trial's answer only (the box empties on the next).
    assert [(t, c) for t, c in comments if c is not None] == [(reported[0], "klingt wie Regen")]
    # Every kind of page was met: consent, volume, check, instructions, practice, main, end.
    assert {"screening-screening answered", "practice feedback", "questionnaire", "done"} <= set(pages)
    assert {k for k in kinds if k.startswith("main-")} == {
        "main-label_choice",
        "main-label_rating",
        "main-comparison",
    }


def test_the_scan_finds_english_where_it_is_left() -> None:
    """The scan is not blind: the English page of the same trial fails it."""
    english = english_phrases()
    assert english.findall("Übung 1 von 2 Which clip sounds more like the examples above? ▶ Clip A")
    assert english.findall("Wie gut beschreibt „energetic“, was diese Ausschnitte gemeinsam haben?")
    german = "Übung 1 von 2 Welcher Ausschnitt klingt eher wie die Beispiele oben? Test Bass"
    assert not english.findall(german)


def test_pages_of_a_study_speak_its_language_and_others_the_browsers(
    app: Flask, german_package: Path, example_package: Path
) -> None:
    for package in (german_package, example_package):
        import_package(app, package)
    client = app.test_client()
    # A German study is German whatever the browser asks for; an English one English.
    page = client.get("/s/demo", headers={"Accept-Language": "en-US,en;q=0.9"}).get_data(as_text=True)
    assert '<html lang="de" dir="ltr">' in page and "Ich stimme zu" in page
    page = client.get("/s/pilot", headers={"Accept-Language": "de-DE,de;q=0.9"}).get_data(as_text=True)
    assert '<html lang="en" dir="ltr">' in page and "I agree, start the study" in page

    # No study: the browser's language among those shipped, else English.
    def index(accept: str) -> str:
        return client.get("/", headers={"Accept-Language": accept}).get_data(as_text=True)

    assert "Hörstudien" in index("de-AT,de;q=0.8")
    assert "Listening studies" in index("fr-FR")
    missing = client.get("/nowhere", headers={"Accept-Language": "de"})
    assert missing.status_code == 404
    assert "Unter dieser Adresse gibt es nichts." in missing.get_data(as_text=True)


def test_an_answer_refused_says_why_in_the_studys_language(app: Flask, german_package: Path) -> None:
    key, _ = import_package(app, german_package)
    app.config["LISTEN_FACTOR"] = 0.9  # the check the tests turn off elsewhere
    p = Participant(app, "demo", key)
    p.enter()
    p.post_stage("volume")
    refused = p.answer(p.trial(), listen=False)  # no clip fetched: nothing was heard
    assert refused.status_code == 425
    why = refused.get_json()["error"]
    assert why == "Bitte hören Sie jeden Ausschnitt bis zum Ende, bevor Sie antworten."
