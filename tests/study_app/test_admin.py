"""The researcher's side: every admin route needs a login; login, lockout, lifecycle, preview."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from artifact_schemas import AnswerKey
from study_app.db import db
from study_app.models import Response, StudySession
from study_app.simulate import csrf_token
from tests.study_app.prolific_ids import pid_of

BIN = Path(sys.executable).parent


def _csrf(client: FlaskClient, path: str = "/admin/login") -> str:
    html = client.get(path).get_data(as_text=True)
    token = csrf_token(html)
    assert token, f"{path} has no CSRF token"
    return token


def test_every_admin_route_refuses_logged_out_requests(study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    client = app.test_client()
    token = _csrf(client)
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint == "admin.login":
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<{arg}>", "pilot")
        for method in rule.methods - {"HEAD", "OPTIONS"}:  # type: ignore[operator]
            response = client.open(
                url, method=method, headers={"X-CSRFToken": token}, data={"csrf_token": token}
            )
            if url.startswith("/admin/api/"):
                assert response.status_code == 401 and response.is_json, (method, url)
            else:
                assert response.status_code == 302, (method, url, response.status_code)
                assert response.headers["Location"].startswith("/admin/login"), (method, url)
            checked += 1
    assert checked >= 7  # dashboard, study page, stats, status, export, preview, logout


def test_login_rotates_session_and_logout_ends_it(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/").status_code == 200
    page = admin_client.get("/admin/s/pilot").get_data(as_text=True)
    assert "Sessions per list" in page and "PROLIFIC_PID={{%PROLIFIC_PID%}}" in page
    token = _csrf(admin_client, "/admin/")
    assert admin_client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert admin_client.get("/admin/").status_code == 302


def test_session_fixation_values_do_not_survive_login(
    study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient
) -> None:
    app, _ = study_app
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
        sess["studies"] = {"pilot": "someone-elses-token"}
    before = client.get_cookie("session")
    assert before is not None
    token = _csrf(client)
    login = client.post(
        "/admin/login", data={"csrf_token": token, "username": "alice", "password": "correct horse battery"}
    )
    assert login.status_code == 302
    with client.session_transaction() as sess:
        assert "planted" not in sess and "studies" not in sess
        assert sess["admin_id"] and sess["admin_nonce"]
    after = client.get_cookie("session")
    assert after is not None and after.value != before.value


def test_lockout_after_repeated_failures(
    study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient
) -> None:
    app, _ = study_app
    app.config["TRUSTED_PROXIES"] = 1
    client = app.test_client()
    token = _csrf(client)

    def login(username: str, password: str, address: str = "198.51.100.7") -> Any:
        form = {"csrf_token": token, "username": username, "password": password}
        return client.post("/admin/login", data=form, headers={"X-Forwarded-For": address})

    for name in ("alice", "mallory"):  # an account, and a name with none
        for _ in range(5):
            wrong = login(name, "nope")
            assert wrong.status_code == 401 and b"Wrong username or password" in wrong.data
        # Issue 31.7: only the account's name locked, so the answers told names apart.
        locked = login(name, "correct horse battery")
        assert locked.status_code == 401 and b"Too many failed attempts" in locked.data, name
    # Issue 31.7: a stranger's guesses locked the researcher out for up to 24 h.
    assert login("alice", "correct horse battery", address="203.0.113.20").status_code == 302
    no_csrf = client.post("/admin/login", data={"username": "alice", "password": "x"})
    assert no_csrf.status_code == 400


def test_new_password_lifts_the_lock(study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient) -> None:
    app, _ = study_app
    client = app.test_client()
    token = _csrf(client)
    for _ in range(6):
        client.post("/admin/login", data={"csrf_token": token, "username": "alice", "password": "nope"})
    runner = app.test_cli_runner()
    assert (
        runner.invoke(
            args=["create-admin", "alice", "--password-stdin"], input="a new long password\n"
        ).exit_code
        == 0
    )
    form = {"csrf_token": token, "username": "alice", "password": "a new long password"}
    assert client.post("/admin/login", data=form).status_code == 302


def test_paused_study_turns_new_participants_away(
    study_app: tuple[Flask, AnswerKey], new_participant: Any, admin_client: FlaskClient
) -> None:
    app, _ = study_app
    runner = app.test_cli_runner()
    assert "pilot: paused" in runner.invoke(args=["pause", "pilot"]).output
    page = new_participant().client.get("/s/pilot")
    assert page.status_code == 403 and b"not open" in page.data
    assert "pilot: closed" in runner.invoke(args=["close", "pilot"]).output
    assert "pilot: open" in runner.invoke(args=["open", "pilot"]).output
    assert new_participant().enter().status_code == 302
    status = runner.invoke(args=["status", "pilot"]).output
    assert "pilot: open" in status
    active = [int(line.split()[2]) for line in status.splitlines()[2:] if line.startswith("l")]
    assert sorted(active) == [0, 0, 0, 1]  # the one participant who entered
    token = _csrf(admin_client, "/admin/s/pilot")
    admin_client.post("/admin/s/pilot/status", data={"csrf_token": token, "status": "closed"})
    assert new_participant().client.get("/s/pilot").status_code == 403


def test_preview_is_a_walk_through_that_counts_nowhere(
    study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient, tmp_path: Any, new_participant: Any
) -> None:
    app, _ = study_app
    token = _csrf(admin_client, "/admin/s/pilot")
    stats = admin_client.get("/admin/api/s/pilot/stats").get_json()
    first_list = next(iter(stats["lists"]))
    assert (
        admin_client.post(
            "/admin/s/pilot/preview", data={"csrf_token": token, "list": first_list}
        ).status_code
        == 302
    )
    page = admin_client.get("/s/pilot/go")
    assert b"Set your volume" in page.data
    token = _csrf(admin_client, "/s/pilot/go")
    admin_client.post("/s/pilot/volume", data={"csrf_token": token})
    trial = admin_client.get("/api/s/pilot/trial").get_json()["trial"]
    body = {
        "idempotency_key": "preview-0001",
        "trial_id": trial["id"],
        "rt_ms": 5,
        "plays": {c["id"]: 1 for c in (*trial["references"], *trial["candidates"])},
        "answer": trial["options"][0]["id"],
    }
    assert (
        admin_client.post("/api/s/pilot/answer", json=body, headers={"X-CSRFToken": token}).status_code == 200
    )
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        assert sess.preview and sess.trial_list.list_key == first_list
    stats = admin_client.get("/admin/api/s/pilot/stats").get_json()
    assert stats["totals"]["started"] == 0 and stats["totals"]["responses"] == 0
    out = tmp_path / "export.csv"
    result = app.test_cli_runner().invoke(args=["export", "pilot", "--out", str(out)])
    assert "wrote 0 responses" in result.output
    # Issue 37: the dashboard says that what it shows so far is a pilot, and marks the session.
    assert stats["pilot"] and [s["who"] for s in stats["recent_sessions"]] == ["pilot"]
    page = admin_client.get("/admin/s/pilot").get_data(as_text=True)
    assert '<p class="pilot-mark" id="pilot-mark">' in page  # shown, not hidden
    new_participant().enter()  # the first participant: the mark goes
    stats = admin_client.get("/admin/api/s/pilot/stats").get_json()
    assert not stats["pilot"] and sorted(s["who"] for s in stats["recent_sessions"]) == [
        "participant",
        "pilot",
    ]
    page = admin_client.get("/admin/s/pilot").get_data(as_text=True)
    assert '<p class="pilot-mark" id="pilot-mark" hidden>' in page


def test_create_admin_rejects_short_passwords(study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    result = app.test_cli_runner().invoke(args=["create-admin", "bob", "--password-stdin"], input="short\n")
    assert result.exit_code != 0 and "at least 10" in result.output


def test_sessions_abandoned_release(study_app: tuple[Flask, AnswerKey], new_participant: Any) -> None:
    from datetime import timedelta

    from study_app.models import utcnow

    app, _ = study_app
    new_participant().enter()
    runner = app.test_cli_runner()
    assert "0 abandoned sessions" in runner.invoke(args=["sessions", "pilot", "--abandoned"]).output
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        sess.last_seen_at = utcnow() - timedelta(hours=2)
        db.session.commit()
    assert "1 abandoned sessions" in runner.invoke(args=["sessions", "pilot", "--abandoned"]).output
    assert "released 1" in runner.invoke(args=["sessions", "pilot", "--abandoned", "--release"]).output
    with app.app_context():
        assert db.session.scalars(select(StudySession.status)).one() == "abandoned"
        assert db.session.scalar(select(func.count()).select_from(Response)) == 0


@pytest.mark.parametrize("bad", ["nope", ""])
def test_unknown_study_is_named(study_app: tuple[Flask, AnswerKey], bad: str) -> None:
    app, _ = study_app
    result = app.test_cli_runner().invoke(args=["status", bad or "x-y"])
    assert result.exit_code != 0 and "imported studies: pilot" in result.output


def test_forget_deletes_one_participant_everywhere(
    study_app: tuple[Flask, AnswerKey], new_participant: Any
) -> None:
    app, _ = study_app
    keep, gone = new_participant(), new_participant()
    for p, pid in ((keep, "KEEP1"), (gone, "GONE1")):
        p.enter(pid=pid)
        p.post_stage("volume")
        assert p.answer(p.trial()).status_code == 200
    runner = app.test_cli_runner()
    result = runner.invoke(args=["forget", "pilot", "--prolific-pid", pid_of("GONE1")])
    assert result.exit_code == 0 and "1 responses" in result.output, result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Response)) == 1
        assert db.session.scalar(select(func.count()).select_from(StudySession)) == 1
    assert runner.invoke(args=["forget", "pilot", "--prolific-pid", pid_of("GONE1")]).exit_code != 0


def _login(app: Flask, password: str = "correct horse battery") -> FlaskClient:
    client = app.test_client()
    form = {"csrf_token": _csrf(client), "username": "alice", "password": password}
    assert client.post("/admin/login", data=form).status_code == 302
    return client


def _copy_cookies(source: FlaskClient, app: Flask) -> FlaskClient:
    copy = app.test_client()
    for cookie in source._cookies.values():
        copy.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)
    return copy


def test_logout_and_a_new_password_end_every_old_cookie(
    study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient
) -> None:
    """Issue 16.7: an old admin cookie worked after logout and after a password reset."""
    app, _ = study_app
    stolen = _copy_cookies(admin_client, app)
    assert stolen.get("/admin/").status_code == 200
    admin_client.post("/admin/logout", data={"csrf_token": _csrf(admin_client, "/admin/")})
    assert stolen.get("/admin/").status_code == 302  # to the login form
    assert stolen.get("/admin/api/s/pilot/stats").status_code == 401

    fresh = _login(app)
    stolen = _copy_cookies(fresh, app)
    result = app.test_cli_runner().invoke(
        args=["create-admin", "alice", "--password-stdin"], input="another long password\n"
    )
    assert result.exit_code == 0, result.output
    assert fresh.get("/admin/").status_code == 302 and stolen.get("/admin/").status_code == 302
    assert _login(app, "another long password").get("/admin/").status_code == 200


def test_no_well_known_secret_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16.7: serve ran with SECRET_KEY=dev silently, and a cookie forged with "dev" worked."""
    from study_app import create_app

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("STUDY_APP_INSTANCE", str(tmp_path / "instance"))
    first = create_app()
    key = first.config["SECRET_KEY"]
    assert key != "dev" and len(key) == 64
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0
    assert create_app().config["SECRET_KEY"] == key  # kept: logins survive a restart
    monkeypatch.setenv("SECRET_KEY", "dev")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    # Flask's own `run` (in --help) started with "dev" and a forged cookie downloaded the
    # export (issue 31.7): the factory refuses, so every server does.
    for command in (["serve", "--port", "1"], ["run", "--port", "1"]):
        served = subprocess.run(
            [BIN / "study-app", *command], env=env, capture_output=True, text=True, check=False, timeout=120
        )
        assert served.returncode != 0 and "SECRET_KEY=dev is a well-known placeholder" in served.stderr, (
            command
        )
    with pytest.raises(RuntimeError, match="at least 16"):
        monkeypatch.setenv("SECRET_KEY", "short")
        create_app()


def test_concurrent_wrong_guesses_cannot_outrun_the_lockout(
    pg_app: Flask, example_package: Path, serve: Any
) -> None:
    """Issue 16.7: 40 logins at 20-way concurrency on PostgreSQL passed 39 wrong guesses
    (failed_logins lost updates); the row lock makes each see the ones before it."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from study_app.admin import FREE_ATTEMPTS
    from study_app.models import LoginThrottle

    runner = pg_app.test_cli_runner()
    result = runner.invoke(
        args=["create-admin", "alice", "--password-stdin"], input="correct horse battery\n"
    )
    assert result.exit_code == 0, result.output

    def guess(i: int) -> str:
        with httpx.Client(base_url=server.url, timeout=120) as client:  # a deadline on a busy machine
            token = csrf_token(client.get("/admin/login").text)
            form = {"csrf_token": token, "username": "alice", "password": f"wrong {i}"}
            return client.post("/admin/login", data=form).text

    with serve(pg_app) as server, ThreadPoolExecutor(20) as pool:
        pages = list(pool.map(guess, range(40)))
    wrong = sum("Wrong username or password" in p for p in pages)
    locked = sum("Too many failed attempts" in p for p in pages)
    assert wrong + locked == 40 and wrong <= FREE_ATTEMPTS, (wrong, locked)
    with pg_app.app_context():
        assert db.session.scalars(select(LoginThrottle.failures)).one() == wrong


def test_landing_page_lists_only_open_studies(study_app: tuple[Flask, AnswerKey]) -> None:
    """Issue 16.11: '/' listed paused studies' titles."""
    app, _ = study_app
    client = app.test_client()
    assert "Pilot study" in client.get("/").get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["pause", "pilot"]).exit_code == 0
    assert "Pilot study" not in client.get("/").get_data(as_text=True)


def test_forget_covers_someone_who_only_declined(
    study_app: tuple[Flask, AnswerKey], new_participant: Any
) -> None:
    """Issue 16.11: forget said 'no such participant' to someone who had only declined,
    and their decline record (naming their hashed id) stayed."""
    from study_app.models import Event

    app, _ = study_app
    new_participant().enter(pid="NOPE1", accept=False)
    new_participant().enter(pid="NOPE2", accept=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["forget", "pilot", "--prolific-pid", pid_of("NOPE1")])
    assert result.exit_code == 0 and "1 decline record" in result.output, result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Event)) == 1  # NOPE2's stays
    assert runner.invoke(args=["forget", "pilot", "--prolific-pid", pid_of("NOPE1")]).exit_code != 0
