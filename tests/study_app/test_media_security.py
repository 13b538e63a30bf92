"""Media access and caching, import rules, and the app's defences: CSRF, CSP, escaping, limits."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from artifact_schemas import AnswerKey, load_key, load_study
from study_app.api import EVENT_KINDS
from study_app.db import db
from study_app.models import Response, Study, StudySession, TrialList
from study_app.simulate import csrf_token


def _started(participant: Any) -> dict[str, Any]:
    participant.enter()
    participant.post_stage("volume")
    return participant.trial()


def test_media_serves_own_list_with_range_etag_and_immutable_cache(
    participant: Any, study_app: tuple[Flask, AnswerKey], example_package: Path
) -> None:
    trial = _started(participant)
    clip = trial["trial"]["references"][0]
    full = participant.client.get(clip["url"])
    # every clip of a scored trial is PCM WAV (issue 34), the headphone check's too
    assert full.status_code == 200 and full.mimetype == "audio/wav"
    cache = full.headers["Cache-Control"]
    assert "immutable" in cache and "max-age=31536000" in cache and "private" in cache
    manifest = load_study(example_package / "study.json")
    assert full.data == (example_package / manifest.clips[clip["id"]].file).read_bytes()
    # The ETag is the opaque id, never the content hash (equal hashes would reveal equal audio).
    assert full.headers["ETag"].strip('"') == clip["id"]
    again = participant.client.get(clip["url"], headers={"If-None-Match": full.headers["ETag"]})
    assert again.status_code == 304
    part = participant.client.get(clip["url"], headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.data == full.data[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(full.data)}"


def test_media_refuses_other_lists_strangers_and_paths(
    participant: Any, new_participant: Any, study_app: tuple[Flask, AnswerKey], example_package: Path
) -> None:
    app, _ = study_app
    _started(participant)
    manifest = load_study(example_package / "study.json")
    with app.app_context():
        sess = db.session.scalars(select(StudySession)).one()
        mine = sess.trial_list.list_key
    trials = {t.id: t for t in manifest.trials}
    own = {
        c
        for t in next(lst for lst in manifest.lists if lst.id == mine).trials
        for c in (*trials[t].references, *trials[t].candidates)
    }
    # Not the calibration sound nor the headphone check's example: every session may fetch
    # them (the volume and screening pages). Clip ids are random per build, so which clip
    # came first decided whether this test passed.
    shared = {manifest.calibration_clip}
    if manifest.screening and manifest.screening.example:
        shared.add(manifest.screening.example.clip)
    other = next(c for c in manifest.clips if c not in own and c not in shared)
    assert participant.client.get(f"/media/{other}").status_code == 404
    assert new_participant().client.get(f"/media/{sorted(own)[0]}").status_code == 404  # no session
    for path in ("../key.json", "..%2Fkey.json", "audio", "%2e%2e%2fstudy.json"):
        response = participant.client.get(f"/media/{path}")
        assert response.status_code == 404 and b"codes" not in response.data


def test_x_accel_redirect_when_configured(participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    app.config["MEDIA_X_ACCEL_PREFIX"] = "/_audio"
    clip = _started(participant)["trial"]["references"][0]
    response = participant.client.get(clip["url"])
    assert response.headers["X-Accel-Redirect"] == f"/_audio/pilot/audio/{clip['id']}.wav"
    assert response.data == b""


def test_import_is_idempotent_and_refuses_a_different_package(
    participant: Any, study_app: tuple[Flask, AnswerKey], example_package: Path, tmp_path: Path
) -> None:
    app, _ = study_app
    runner = app.test_cli_runner()
    again = runner.invoke(args=["import", str(example_package)])
    assert again.exit_code == 0 and "unchanged" in again.output
    changed = tmp_path / "pilot"
    shutil.copytree(example_package, changed)
    data = json.loads((changed / "study.json").read_text())
    data["title"] = "Pilot study, second version"
    (changed / "study.json").write_text(json.dumps(data))
    key = json.loads((changed / "key.json").read_text())
    from artifact_schemas import StudyManifest, manifest_sha256

    key["manifest_sha256"] = manifest_sha256(StudyManifest.model_validate(data))
    (changed / "key.json").write_text(json.dumps(key))
    refused = runner.invoke(args=["import", str(changed)])
    assert refused.exit_code != 0 and "--replace" in refused.output
    # With responses stored, even --replace is refused: data is never silently rewritten.
    participant.answer(_started(participant))
    refused = runner.invoke(args=["import", str(changed), "--replace"])
    assert refused.exit_code != 0 and "1 responses" in refused.output
    with app.app_context():
        assert db.session.scalar(select(Study.title)) == "Pilot study"
        db.session.query(Response).delete()
        db.session.query(StudySession).delete()
        db.session.commit()
    replaced = runner.invoke(args=["import", str(changed), "--replace"])
    assert replaced.exit_code == 0, replaced.output
    with app.app_context():
        assert db.session.scalar(select(Study.title)) == "Pilot study, second version"


def test_posts_without_csrf_token_are_refused(participant: Any) -> None:
    trial = _started(participant)
    response = participant.client.post("/api/s/pilot/answer", json={"trial_id": trial["trial"]["id"]})
    assert response.status_code == 400 and "CSRF" in response.get_json()["error"]
    form = participant.client.post("/s/pilot/consent", data={"choice": "accept"})
    assert form.status_code == 400


def test_strict_csp_and_escaped_study_texts(
    app: Flask, example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    from stimuli_builder.build import build_package

    config = write_config(
        tmp_path / "cfg", **{'title = "Pilot study"': 'title = "<script>alert(1)</script>"'}
    )
    build_package(config, example_run, tmp_path / "pilot")
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(tmp_path / "pilot")]).exit_code == 0
    page = app.test_client().get("/s/pilot")
    html = page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>listen</b>" not in html and "&lt;b&gt;listen&lt;/b&gt;" in html  # raw HTML in Markdown is text
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/study.js" defer>']
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    cookie = page.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_oversized_request_and_rate_limit(new_participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    p = new_participant()
    p.enter()
    p.go()
    big = p.client.post(
        "/api/s/pilot/event",
        data=b"x" * 100_000,
        headers={"X-CSRFToken": p.token, "Content-Type": "application/json"},
    )
    assert big.status_code == 413 and big.is_json
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 3
    codes = [new_participant().enter().status_code for _ in range(4)]
    assert codes == [302, 302, 429, 429]  # 1 session before + 2 = 3 in the last minute


def test_stored_ip_hashes_cannot_be_reversed_without_the_secret(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    """Issue 16.11: under `serve` the IP hash was sha256("dev:"+ip); a reader of the database
    hashed the 2^32 IPv4 addresses and had every participant's address in minutes. The hash
    is keyed by the instance's secret: the same address under another secret hashes apart,
    and no digest of the address with a guessable prefix matches it."""
    import hashlib

    app, _ = study_app
    assert new_participant().enter().status_code == 302
    with app.app_context():
        stored = db.session.scalars(select(StudySession.ip_hash)).one()
    ip = "127.0.0.1"  # the test client's address
    guesses = {
        hashlib.sha256(f"{prefix}{ip}".encode()).hexdigest()
        for prefix in ("", "dev:", ":", "pilot:", "pilot|")
    }
    assert stored not in guesses and len(stored) == 64
    app.config["SECRET_KEY"] = "another instance's secret, 64 characters long, for this test ok"
    assert new_participant().enter().status_code == 302
    with app.app_context():
        hashes = set(db.session.scalars(select(StudySession.ip_hash)))
    assert len(hashes) == 2  # same address, another secret: another hash


def test_event_floods_are_cut_off(participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    """Issue 16.11: one session stored 3000 events of 2 KB in 23 s."""
    app, _ = study_app
    app.config["EVENTS_PER_SESSION_PER_MINUTE"] = 5
    _started(participant)
    headers = {"X-CSRFToken": participant.token}
    body = {"kind": "visibility", "data": {"x": "y" * 1500}}
    codes = [
        participant.client.post("/api/s/pilot/event", json=body, headers=headers).status_code
        for _ in range(8)
    ]
    assert codes == [204] * 5 + [429] * 3
    with app.app_context():
        from study_app.models import Event

        assert (
            db.session.scalar(select(func.count()).select_from(Event).where(Event.kind == "visibility")) == 5
        )
    assert participant.answer(participant.trial()).status_code == 200  # the study goes on


def test_limits_apply_per_participant_behind_a_trusted_proxy(
    new_participant: Any, study_app: tuple[Flask, AnswerKey]
) -> None:
    """Issue 16.4: behind nginx every participant had nginx's address, so the per-address
    limit was global (25 participants from 25 addresses: 5 refused)."""
    app, _ = study_app
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 2

    def arrive(forwarded: str) -> int:
        p = new_participant()
        page = p.client.get("/s/pilot", headers={"X-Forwarded-For": forwarded})
        form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "choice": "accept"}
        return p.client.post(
            "/s/pilot/consent", data=form, headers={"X-Forwarded-For": forwarded}
        ).status_code

    # No proxy trusted: the header is the client's own and changes nothing.
    assert [arrive(f"10.0.0.{i}") for i in range(3)] == [302, 302, 429]
    app.config["TRUSTED_PROXIES"] = 1  # nginx, as deploy/ configures it
    assert [arrive(f"10.0.1.{i}") for i in range(6)] == [302] * 6
    # nginx appends the real address, so a forged first entry does not help a repeat visitor.
    assert [arrive(f"6.6.6.{i}, 10.0.2.1") for i in range(3)] == [302, 302, 429]


# JSON values as a hostile client sends them: NaN and infinities (Python's json writes them),
# NUL and other control characters in strings, nesting.
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=_JSON,
    # Fields the endpoints read, with values near the valid ones, so that fuzzing gets past
    # the first check: each class of input that was once a 500 is in these strategies.
    keys=st.fixed_dictionaries(
        {},
        optional={
            "idempotency_key": st.text(max_size=70)
            | st.sampled_from(["abcdefgh1234", "abcdefgh1234\n", "abcdefgh\x001234"]),
            "trial_id": st.text(max_size=20),
            "rt_ms": st.integers(-5, 10**9) | st.floats(allow_nan=True, allow_infinity=True),
            "plays": st.dictionaries(
                st.text(max_size=20), st.integers(-2, 2000) | st.text(max_size=3), max_size=3
            ),
            "answer": st.text(max_size=20) | st.integers(),
            "rating": st.integers(-3, 12)
            | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(max_size=3),
            "confidence": st.integers(-3, 12) | st.none(),
            "kind": st.sampled_from(sorted(EVENT_KINDS)) | _JSON,
            "data": st.dictionaries(st.text(max_size=12), _JSON, max_size=4) | _JSON,
            "client_ts": st.text(max_size=45) | st.just("2026-12-01T00:00:00\x00Z") | _JSON,
        },
    ),
    endpoint=st.sampled_from(["answer", "event"]),
)
def test_fuzzed_api_never_errors_500(
    any_db_participant: Any, body: Any, keys: dict[str, Any], endpoint: str
) -> None:
    participant = any_db_participant
    if not participant.token:
        _started(participant)
    payload = {**body, **keys} if isinstance(body, dict) else (keys or body)
    response = participant.client.post(
        f"/api/s/pilot/{endpoint}", json=payload, headers={"X-CSRFToken": participant.token}
    )
    assert response.status_code < 500, (payload, response.get_data(as_text=True))
    if response.status_code != 204:
        assert response.is_json


def test_bad_input_gets_400_never_500(any_db_participant: Any) -> None:
    """Issue 16.10: each of these was an HTTP 500 (several only on PostgreSQL)."""
    p = any_db_participant
    trial = _started(p)
    headers = {"X-CSRFToken": p.token, "Content-Type": "application/json"}
    answer = {"idempotency_key": "abcdefgh1234", "trial_id": trial["trial"]["id"], "rt_ms": 1}
    bodies = {
        "event": [
            "[" * 100_00 + "]" * 100_00,  # deep nesting: RecursionError in the parser
            json.dumps({"kind": ["visibility"]}),  # a non-string kind: unhashable
            json.dumps({"kind": {"a": 1}}),
            '{"kind": "visibility", "data": {"x": NaN}}',
            '{"kind": "visibility", "data": {"x": -Infinity}}',
            '{"kind": "visibility", "data": {"x": 1e999}}',
            json.dumps({"kind": "visibility", "data": {"x": "a\x00b"}}),
            json.dumps({"kind": "visibility", "client_ts": "2026\x00"}),
            json.dumps({"kind": "visibility", "client_ts": "\ud800"}),  # a lone surrogate (31.7)
            json.dumps({"kind": "visibility", "data": {"\udfff": 1}}),
        ],
        "answer": [
            json.dumps({**answer, "idempotency_key": "abcdefgh1234\n"}),  # "$" matched before \n
            json.dumps({**answer, "client_ts": "2026-12-01T00:00:00\x00"}),
            json.dumps({**answer, "answer": "o\x00"}),
            json.dumps({**answer, "client_ts": "2026-12-01\ud800"}),  # not encodable as UTF-8
            json.dumps(answer).replace('"rt_ms": 1', '"rt_ms": NaN'),
        ],
    }
    for endpoint, items in bodies.items():
        for body in items:
            r = p.client.post(f"/api/s/pilot/{endpoint}", data=body, headers=headers)
            assert r.status_code == 400 and r.is_json and r.get_json()["error"], (body[:80], r.status_code)
    # NUL in the path, Prolific's parameters, the consent form; CR/LF in the login's next.
    for url in ("/s/pil%00ot", "/s/pilot?STUDY_ID=a%00b", "/media/ab%00cd"):
        assert p.client.get(url).status_code in (400, 404), url
    fresh = type(p)(p.client.application, "pilot", p.key)
    page = fresh.client.get("/s/pilot").get_data(as_text=True)
    form = {"csrf_token": csrf_token(page), "choice": "accept", "screen": "1x1\x00", "STUDY_ID": "a\x00"}
    assert fresh.client.post("/s/pilot/consent", data=form).status_code == 400
    login = p.client.get("/admin/login?next=/admin%0d%0aX-Evil:%201")
    form = {"csrf_token": csrf_token(login.get_data(as_text=True)), "username": "x", "password": "y"}
    assert p.client.post("/admin/login?next=/admin%0d%0aX-Evil:%201", data=form).status_code == 401


def test_questionnaire_refuses_numbers_that_are_not_finite(
    app: Flask, example_run: Path, write_config: Any, tmp_path: Path, new_participant: Any
) -> None:
    """Issue 16.10: 'nan', 'inf' or '1e999' in a number field stopped the participant with a 500."""
    from stimuli_builder.build import build_package

    extra = '[[questionnaire.fields]]\nid = "age"\nlabel = "Your age"\ntype = "number"\n'
    config = write_config(tmp_path / "cfg", extra, **{'id = "pilot"': 'id = "ages"'})
    build_package(config, example_run, tmp_path / "ages")
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(tmp_path / "ages")]).exit_code == 0
    p = new_participant()
    p.slug = "ages"
    p.key = load_key(tmp_path / "ages" / "key.json")  # its own ids: drawn per build (issue 31)
    p.enter()
    assert "A few last questions" in p.complete(stop_at_questionnaire=True)
    for bad in ("nan", "inf", "-Infinity", "1e999"):
        page = p.post_stage("questionnaire", device="Headphones", age=bad)
        assert page.status_code == 400 and "Please enter a number" in page.get_data(as_text=True), bad
    assert p.post_stage("questionnaire", device="Headphones", age="34").status_code == 302
    with app.app_context():
        stored = db.session.scalars(select(StudySession.questionnaire)).one()
    assert stored == {"device": "Headphones", "age": 34.0}


def test_fuzzing_left_the_session_consistent(participant: Any, study_app: tuple[Flask, AnswerKey]) -> None:
    app, _ = study_app
    trial = _started(participant)
    assert participant.answer(trial).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Response)) == 1


def test_database_down_gives_a_friendly_503(tmp_path: Path, port: Any) -> None:
    """Issue 16.10: with the database down the participant saw a bare '500 Internal Server Error'."""
    from study_app import create_app

    closed = port()  # nothing listens there
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "a test key of 32 characters, ok!",
            "SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://nobody@127.0.0.1:{closed}/none",
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"connect_timeout": 2}},
        }
    )
    client = app.test_client()
    page = client.get("/s/pilot")
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert "Your answers so far are saved" in page.get_data(as_text=True)
    api = client.get("/api/s/pilot/trial")
    assert api.status_code == 503 and "retrying is safe" in api.get_json()["error"]


# Any text, and text with a NUL or a line break inside (PostgreSQL refuses NUL in strings).
_FORM_TEXT = st.text(max_size=300) | st.builds(
    lambda a, sep, b: a + sep + b,
    st.text(max_size=20),
    st.sampled_from(["\x00", "\r\n"]),
    st.text(max_size=20),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            # "accept" often enough that the other fields reach the database (NUL in STUDY_ID
            # or screen was a 500 on PostgreSQL only once a session was created).
            "choice": st.sampled_from(["accept", "decline"]) | st.text(max_size=10),
            **{
                name: _FORM_TEXT
                for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "screen", "device", "x")
            },
        },
    ),
    query=_FORM_TEXT,
)
def test_fuzzed_forms_never_error_500(any_db_participant: Any, fields: dict[str, str], query: str) -> None:
    """Consent, questionnaire and entry with any text (NUL and control characters included)."""
    from urllib.parse import quote

    app = any_db_participant.client.application
    # Every example is a new arrival from 127.0.0.1: neither the per-IP limit nor the lists'
    # 12 places may turn it away before its fields reach the database.
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10**6
    with app.app_context():
        db.session.execute(update(TrialList).values(target=10**6))
        db.session.commit()
    p = type(any_db_participant)(app, "pilot", any_db_participant.key)
    entry = p.client.get(f"/s/pilot?PROLIFIC_PID={quote(query)}&SESSION_ID={quote(query)}")
    assert entry.status_code < 500
    token = csrf_token(p.client.get("/s/pilot").get_data(as_text=True))
    for path in ("/s/pilot/consent", "/s/pilot/questionnaire", "/s/pilot/instructions"):
        response = p.client.post(path, data={"csrf_token": token, **fields})
        assert response.status_code < 500, (path, fields, response.get_data(as_text=True)[:200])
