"""Shared fixtures: apps on SQLite and PostgreSQL, a live HTTP server, a real browser.

Services are real. Where one is missing, its tests skip locally with the reason,
and fail in CI (``CI=true``), where every Postgres and browser test must run.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import hypothesis
import pytest
from flask import Flask
from werkzeug.serving import make_server

from sae_core.numerics import pin_cpu_numerics
from study_app import create_app
from study_app.db import db

# Bots and test clients answer as fast as they can; the server's listening check (issue 16)
# would refuse them. Off for every app the tests start, in process or as a command, except
# where a test sets LISTEN_FACTOR itself (tests/study_app/test_listening.py).
os.environ.setdefault("LISTEN_FACTOR", "0")

# In-process tests compute with the same CPU kernels as the commands they compare with
# (sae-core pins them before importing torch); nothing has imported torch yet here.
pin_cpu_numerics()

# In CI, Hypothesis draws the same examples on every run: a red build is then a bug anyone
# can reproduce, never a draw (`pytest --hypothesis-profile dev` explores afresh).
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis.settings.register_profile("dev")
hypothesis.settings.load_profile("ci" if os.environ.get("CI") else "dev")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_TIMEOUT_MS = 180_000
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(reason: str) -> NoReturn:
    """Skip locally, fail in CI: a CI run must never silently drop Postgres or browser tests."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)", pytrace=False)
    pytest.skip(reason)


# Tests that use these fixtures get the matching marker automatically, so that
# "-m 'not browser'" works and the summary below can count them.
_SERVICE_MARKERS = {
    "postgres_url": "postgres",
    "postgres_database": "postgres",
    "private_postgres": "postgres",
    "browser": "browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _SERVICE_MARKERS.items():
            if fixture in fixtures:
                item.add_marker(marker)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many Postgres and browser tests ran, so a skipped service cannot go unnoticed."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") not in ("call", "setup"):
                continue
            if outcome == "passed" and report.when != "call":
                continue
            for marker in ("postgres", "browser"):
                if marker in getattr(report, "keywords", {}):
                    counts.setdefault(marker, {}).setdefault(outcome, 0)
                    counts[marker][outcome] += 1
    for marker in ("postgres", "browser"):
        parts = ", ".join(f"{n} {o}" for o, n in sorted(counts.get(marker, {}).items())) or "none"
        terminalreporter.write_line(f"{marker} tests: {parts}")


# --------------------------------------------------------------------------- apps


def _make_app(db_url: str, tmp_path: Path) -> Flask:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SQLALCHEMY_DATABASE_URI": db_url,
        }
    )
    app.instance_path = str(tmp_path / "instance")
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The app on a fresh SQLite file, tables created."""
    app = _make_app(f"sqlite:///{tmp_path / 'study.sqlite'}", tmp_path)
    with app.app_context():
        app.test_cli_runner().invoke(args=["init-db"], catch_exceptions=False)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@contextmanager
def _new_database() -> Iterator[str]:
    """A uniquely named PostgreSQL database, dropped afterwards; its URL.

    The server is ``TEST_DATABASE_URL`` (any database on it; used only to create ours)
    or 127.0.0.1:5432 as user postgres.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_ADMIN_URL))
    admin = admin.set(drivername="postgresql+psycopg")
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        require_service(f"PostgreSQL not reachable at {admin.host}:{admin.port} ({exc})")
    name = f"mc_test_{uuid.uuid4().hex[:12]}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database for this test session (tests drop their tables)."""
    with _new_database() as url:
        yield url


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """URL of a PostgreSQL database of this test's own (for commands that leave tables)."""
    with _new_database() as url:
        yield url


@pytest.fixture
def pg_app(postgres_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The app on the test session's PostgreSQL database, with empty tables."""
    app = _make_app(postgres_url, tmp_path)
    with app.app_context():
        app.test_cli_runner().invoke(args=["init-db"], catch_exceptions=False)
    yield app
    drop_all_tables(app)


def drop_all_tables(app: Flask) -> None:
    """Drop the app's tables and Alembic's version table, so the next init-db starts from scratch."""
    with app.app_context():
        db.session.remove()
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        db.engine.dispose()


@pytest.fixture(scope="session")
def drop_tables() -> Any:
    """``drop_tables(app)``: drop the app's tables (PostgreSQL tests share one database)."""
    return drop_all_tables


# --------------------------------------------------------------------------- live server + browser


class LiveServer:
    """A real threaded HTTP server on a free loopback port."""

    def __init__(self, app: Flask) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (no browser download)."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        require_service(f"{CHROMIUM} not found (bash tests/ensure_services.sh installs it)")
    from playwright.sync_api import expect, sync_playwright

    # Generous waits: CI runs on busy two-core machines, where a full-page screenshot took
    # longer than Playwright's 30 s default once. They are deadlines, never assertions.
    expect.set_options(timeout=BROWSER_TIMEOUT_MS // 2)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        new_context = browser.new_context

        def patient_context(*args: Any, **kwargs: Any) -> Any:
            context = new_context(*args, **kwargs)
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            context.set_default_navigation_timeout(BROWSER_TIMEOUT_MS)
            return context

        browser.new_context = patient_context
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


# --- Study packages ------------------------------------------------------------------
# A small run directory written through the artifact contract (stimuli_builder.example),
# so the builder and the app are tested without training anything; tests/sae_core
# covers producing these tables for real.

from stimuli_builder.example import write_example_run  # noqa: E402

EXAMPLE_CONFIG = """
[study]
id = "pilot"
title = "Pilot study"
consent = "consent.md"
seed = 3
# A fixed salt, so that the tests' package is one design (build draws a secret one per
# package otherwise, and a third of this small config's designs fail check: issue 34).
salt = "c0ffee00c0ffee00c0ffee00c0ffee00"

[label_validation]
formats = ["choice", "rating"]
per_list = 4

[steering]
mode = "two_way"
per_list = 3

[lists]
count = 4
target_participants = 3

[audio]
sample_rate = 16000

[[questionnaire.fields]]
id = "device"
label = "What did you listen with?"
type = "choice"
choices = ["Headphones", "Loudspeakers"]
"""


def write_example_config(directory: Path, extra: str = "", **replace: str) -> Path:
    """The example study config (plus ``extra`` TOML) in ``directory``; returns its path."""
    text = EXAMPLE_CONFIG
    for old, new in replace.items():
        text = text.replace(old, new)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "consent.md").write_text("# Consent\n\nYou agree to <b>listen</b>.\n")
    path = directory / "study.toml"
    path.write_text(text + extra)
    return path


@pytest.fixture(scope="session")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def example_package(example_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study package built from the example run (read-only: copy it before changing it)."""
    from stimuli_builder.build import build_package

    root = tmp_path_factory.mktemp("study")
    out = root / "pilot"
    build_package(write_example_config(root / "config"), example_run, out)
    return out


@pytest.fixture(scope="session")
def write_config() -> Any:
    """``write_config(directory, extra="", **replace)``: write the example study config."""
    return write_example_config


@pytest.fixture(scope="session")
def serve() -> Any:
    """``with serve(app) as server:`` a real threaded HTTP server for any app (server.url)."""
    return LiveServer


DEMO_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "demo-study" / "study.toml"


@pytest.fixture(scope="session")
def demo_package(example_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo study's config (examples/demo-study) built on the example run."""
    from stimuli_builder.build import build_package

    out = tmp_path_factory.mktemp("demo-study") / "demo"
    build_package(DEMO_CONFIG, example_run, out)
    return out


@pytest.fixture(scope="session")
def need_service() -> Any:
    """``need_service(reason)``: skip locally, fail in CI (for fixtures in sub-directories)."""
    return require_service


@pytest.fixture
def screenshot(tmp_path: Path) -> Any:
    """``screenshot(page, name)``: a full-page PNG; into docs/img/ when UPDATE_SCREENSHOTS=1.

    The user guide's pictures come from the browser tests, so they show what the
    tests saw: ``UPDATE_SCREENSHOTS=1 .venv/bin/pytest -m browser`` refreshes them.
    """
    folder = Path(__file__).resolve().parents[1] / "docs" / "img"
    target = folder if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "img"
    target.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = target / f"{name}.png"
        # Only a settled page: a capture that overlaps a navigation can wait forever.
        page.wait_for_load_state("load")
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        return path

    return take


@pytest.fixture(scope="session")
def accessible() -> Any:
    """``accessible(page, where)``: axe-core finds no serious or critical violation on the page.

    axe-core (the engine of Deque's checkers and Lighthouse) comes bundled with the
    axe-playwright-python package; it runs in the page through Playwright's evaluate,
    which the pages' CSP does not block (issue 37)."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page: Any, where: str) -> None:
        page.wait_for_load_state("load")
        found = axe.run(page).response["violations"]
        bad = [v for v in found if v["impact"] in ("serious", "critical")]
        assert not bad, f"{where}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad
        )

    return check


def free_port() -> int:
    """A free loopback TCP port (for servers the tests start as subprocesses)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, tries: int = 150) -> Any:
    """GET ``url`` until the server answers (any status); return that response."""
    import time

    import httpx

    for _ in range(tries):
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.fixture(scope="session")
def port() -> Any:
    """``port()``: a free loopback TCP port."""
    return free_port


@pytest.fixture(scope="session")
def wait_for() -> Any:
    """``wait_for(url)``: the first response from a server that is starting."""
    return wait_http


# --- What a reviewer would reject in a report ---------------------------------------------

MODEL_TABLES = ("correctness_gee", "correctness_ml_glmm", "correctness_bayes_glmm", "ratings_lmm")


def report_problems(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Intervals that exclude their estimate, blank or twin coefficients, tables printed as
    a bare "no data" (issue 19)."""
    import math

    problems = [f"{name}: no rows, and nothing says why" for name, rows in tables.items() if not rows]
    for row in tables.get("inter_rater", []):
        est, low, high = row["estimate"], row["ci_low"], row["ci_high"]
        if est is None or not math.isfinite(est):
            continue
        if low is None or high is None or not (low <= est <= high):
            problems.append(f"inter_rater {row['measure']}: {est} outside [{low}, {high}]")
    for name in MODEL_TABLES:
        by_question: dict[str, list[dict[str, Any]]] = {}
        for row in tables.get(name, []):
            by_question.setdefault(row["question"], []).append(row)
        for question, rows in by_question.items():
            where = f"{name} / {question}"
            if any(not r["formula"] or not r["n"] for r in rows):
                problems.append(f"{where}: a row without its formula or n")
            if rows[0]["term"] == "(not fitted)":
                if len(rows) != 1 or not rows[0]["note"].startswith("not fitted: "):
                    problems.append(f"{where}: not fitted, but not one row saying why")
                continue
            coefs = [r["coef"] for r in rows]
            if any(c is None or not math.isfinite(c) for c in coefs):
                problems.append(f"{where}: blank coefficient")
            elif len({round(c, 6) for c in coefs}) != len(coefs):
                problems.append(f"{where}: twin coefficients {coefs} (aliased terms)")
            for r in rows:
                if r["ci_low"] is not None and not (r["ci_low"] <= r["coef"] <= r["ci_high"]):
                    problems.append(f"{where} {r['term']}: {r['coef']} outside its CI")
    return problems


@pytest.fixture(scope="session")
def check_report() -> Any:
    """``check_report(report_json_path)``: the problems a reviewer would reject, as a list."""

    def check(path: Path) -> list[str]:
        import json

        return report_problems(json.loads(Path(path).read_text())["tables"])

    return check
