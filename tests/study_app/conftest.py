"""A participant that drives the study through the Flask test client, as the browser would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from artifact_schemas import AnswerKey, StudyManifest, load_key, load_study
from study_app.simulate import csrf_token
from tests.study_app.prolific_ids import prolific_ids


def import_package(app: Flask, package: Path) -> tuple[AnswerKey, StudyManifest]:
    """``study-app import package`` into ``app``; the package's key and manifest."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["import", str(package)])
        assert result.exit_code == 0, result.output
    return load_key(package / "key.json"), load_study(package / "study.json")


def csrf_of(html: str) -> str:
    token = csrf_token(html)
    assert token, "page has no CSRF token"
    return token


class Participant:
    """One browser: a test client with its own cookies."""

    def __init__(self, app: Flask, slug: str, key: AnswerKey) -> None:
        self.client: FlaskClient = app.test_client()
        self.slug = slug
        self.key = key
        self.token = ""
        self.sent: list[str] = []

    def enter(self, pid: str | None = None, accept: bool = True, **override: str) -> Any:
        """Open the study link and answer the consent page. ``pid`` names the participant
        (tests.study_app.prolific_ids gives their Prolific ids); ``override`` sets any of
        PROLIFIC_PID, STUDY_ID and SESSION_ID as given ("" leaves it out)."""
        ids = {**(prolific_ids(pid) if pid else {}), **override}
        ids = {k: v for k, v in ids.items() if v}
        page = self.client.get(f"/s/{self.slug}" + (f"?{urlencode(ids)}" if ids else ""))
        if page.status_code != 200:
            return page
        self.token = csrf_of(page.get_data(as_text=True))
        form = {"csrf_token": self.token, "choice": "accept" if accept else "decline", "screen": "800x600"}
        return self.client.post(f"/s/{self.slug}/consent", data=form | ids)

    def go(self) -> Any:
        page = self.client.get(f"/s/{self.slug}/go")
        if page.status_code == 200:
            self.token = csrf_of(page.get_data(as_text=True))
        return page

    def post_stage(self, stage: str, **form: str) -> Any:
        self.go()
        return self.client.post(f"/s/{self.slug}/{stage}", data={"csrf_token": self.token, **form})

    def trial(self) -> dict[str, Any]:
        response = self.client.get(f"/api/s/{self.slug}/trial")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def answer(
        self,
        trial: dict[str, Any],
        *,
        correct: bool = True,
        key: str | None = None,
        listen: bool = True,
        **override: Any,
    ) -> Any:
        """Submit an answer to ``trial``; with ``listen``, first fetch every clip it needs
        whole, as the browser's player does (the server counts a clip heard only then)."""
        t = trial["trial"]
        if listen:
            for clip in (*t["references"], *t["candidates"]):
                if "url" in clip:
                    self.client.get(clip["url"])
        tk = self.key.trials[t["id"]]
        body: dict[str, Any] = {
            "idempotency_key": key or uuid.uuid4().hex,
            "trial_id": t["id"],
            "rt_ms": 1234.0,
            "plays": {c["id"]: 1 for c in (*t["references"], *t["candidates"])},
        }
        if t["options"]:
            ids = [o["id"] for o in t["options"]]
            wrong = [i for i in ids if i != tk.correct_option]
            body["answer"] = tk.correct_option if correct and tk.correct_option else wrong[0]
        if t["rating"]:
            body["rating"] = t["rating"]["max"]
        if t["confidence"]:
            body["confidence"] = 3
        if t.get("sliders"):
            body["sliders"] = {c["id"]: t["sliders"]["max"] for c in t["candidates"]}
        body |= override
        self.go()
        response = self.client.post(
            f"/api/s/{self.slug}/answer", json=body, headers={"X-CSRFToken": self.token}
        )
        if response.status_code == 200:
            self.sent.append(body["idempotency_key"])
        return response

    def complete(
        self,
        *,
        fail_screening: bool = False,
        fail_attention: bool = False,
        stop_at_questionnaire: bool = False,
    ) -> str:
        """Run the whole session; return the final page's HTML (or the questionnaire's)."""
        for _ in range(500):
            page = self.go()
            html = page.get_data(as_text=True)
            if 'id="runner"' in html:
                data = self.trial()
                if "trial" not in data:
                    continue
                screening = data["trial"]["phase"] == "screening"
                attention = self.key.trials[data["trial"]["id"]].trial_type == "attention"
                wrong = (screening and fail_screening) or (attention and fail_attention)
                assert self.answer(data, correct=not wrong).status_code == 200
            elif "Set your volume" in html:
                self.post_stage("volume")
            elif "stage=instructions" in html or "/instructions" in html:
                self.post_stage("instructions")
            elif "A few last questions" in html and stop_at_questionnaire:
                return html
            elif "A few last questions" in html:
                self.post_stage("questionnaire", device="Headphones")
            else:
                return html
        raise AssertionError("session did not finish")


@pytest.fixture(scope="session")
def own_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study of one's own clips: 12 files and a conditions CSV (MUSHRA and slider trials)."""
    from stimuli_builder.build import build_package
    from stimuli_builder.example import write_example_stimuli

    root = tmp_path_factory.mktemp("own-clips")
    out = root / "package"
    build_package(write_example_stimuli(root / "in"), None, out)
    return out


@pytest.fixture
def study_app(app: Flask, example_package: Path) -> Iterator[tuple[Flask, AnswerKey]]:
    """The SQLite app with the example package imported."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["import", str(example_package)])
        assert result.exit_code == 0, result.output
    yield app, load_key(example_package / "key.json")


def codes_of(app: Flask, slug: str = "pilot") -> dict[str, str]:
    """The completion codes the app drew for ``slug`` at import (they are in no file)."""
    from sqlalchemy import select

    from study_app.db import db
    from study_app.models import Study

    with app.app_context():
        return dict(db.session.scalars(select(Study.completion_codes).where(Study.slug == slug)).one())


@pytest.fixture
def study_codes(study_app: tuple[Flask, AnswerKey]) -> dict[str, str]:
    return codes_of(study_app[0])


@pytest.fixture
def participant(study_app: tuple[Flask, AnswerKey]) -> Participant:
    app, key = study_app
    return Participant(app, "pilot", key)


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_participant(request: pytest.FixtureRequest, example_package: Path) -> Participant:
    """A participant on the example study, once on SQLite and once on PostgreSQL."""
    app: Flask = request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["import", str(example_package)])
        assert result.exit_code == 0, result.output
    return Participant(app, "pilot", load_key(example_package / "key.json"))


@pytest.fixture
def new_participant(study_app: tuple[Flask, AnswerKey]) -> Any:
    """``new_participant()``: another browser (fresh cookies) on the same study."""
    app, key = study_app
    return lambda: Participant(app, "pilot", key)


ADMIN_PASSWORD = "correct horse battery"


@pytest.fixture
def admin_client(study_app: tuple[Flask, AnswerKey]) -> FlaskClient:
    """A test client logged in as a researcher (created with study-app create-admin)."""
    app, _ = study_app
    result = app.test_cli_runner().invoke(
        args=["create-admin", "alice", "--password-stdin"], input=ADMIN_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    client = app.test_client()
    token = csrf_of(client.get("/admin/login").get_data(as_text=True))
    response = client.post(
        "/admin/login", data={"csrf_token": token, "username": "alice", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 302
    return client
