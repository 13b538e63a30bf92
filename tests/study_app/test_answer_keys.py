"""An idempotency key counts within its session (issue 31.7).

Keys were unique across all sessions: an answer sent with a key another session had
used collided with that session's row, and the server answered with *that* session's
result, marked a duplicate, storing nothing and not moving this session on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from study_app.db import db
from study_app.models import Response
from tests.study_app.conftest import Participant


def test_another_sessions_key_is_a_new_key_here_not_its_result(any_db_participant: Any) -> None:
    first = any_db_participant
    second = Participant(first.client.application, "pilot", first.key)
    for who, pid in ((first, "KEY1"), (second, "KEY2")):
        who.enter(pid=pid)
        who.post_stage("volume")
    shared = "shared-key-31-7"
    theirs = first.answer(first.trial(), key=shared, correct=False)
    assert theirs.status_code == 200 and "duplicate" not in theirs.get_json()

    trial = second.trial()
    mine = second.answer(trial, key=shared)
    assert mine.status_code == 200, mine.get_json()
    assert "duplicate" not in mine.get_json() and mine.get_json()["position"] == 1
    assert second.trial()["position"] == 1  # this session moved on: its answer is stored
    # Its own repeat is still recognised: the key replays this session's answer.
    again = second.answer(trial, key=shared)
    assert again.status_code == 200 and again.get_json() == {**mine.get_json(), "duplicate": True}
    with first.client.application.app_context():
        rows = db.session.scalars(select(Response).where(Response.idempotency_key == shared)).all()
        assert sorted(r.correct for r in rows) == [False, True]  # one answer in each session
        assert len({r.session_id for r in rows}) == 2


def _answer_body(trial: dict[str, Any], idem: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "idempotency_key": idem,
        "trial_id": trial["id"],
        "rt_ms": 900,
        "plays": {c["id"]: 1 for c in (*trial["references"], *trial["candidates"])},
    }
    if trial["options"]:
        body["answer"] = trial["options"][0]["id"]
    if trial["rating"]:
        body["rating"] = trial["rating"]["min"]
    if trial["confidence"]:
        body["confidence"] = trial["confidence"]["min"]
    return body


def test_concurrent_submits_of_one_trial_store_one_answer(any_db_participant: Any, serve: Any) -> None:
    """Twelve submits of one trial at once, half with one key (a request retried), half with a
    key each: one answer is stored and the session moves on once; a repeat of the stored
    key gets its result, marked duplicate; every other submit gets 409. The answer's
    writes check the session they read is still so (issue 31: Core statements, one
    statement on PostgreSQL), so no interleaving stores two or moves the session twice."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    participant = any_db_participant
    app = participant.client.application
    participant.enter(pid="CONC")
    participant.post_stage("volume")
    trial = participant.trial()["trial"]
    participant.go()  # its CSRF token
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = participant.client.get_cookie(name)
    assert cookie is not None
    keys = ["retried-key-0001"] * 6 + [f"own-key-{i:04d}" for i in range(6)]
    start = threading.Barrier(len(keys))
    with serve(app) as server:

        def submit(idem: str) -> tuple[str, int, dict[str, Any]]:
            headers = {"Cookie": f"{name}={cookie.value}", "X-CSRFToken": participant.token}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                start.wait(timeout=60)
                r = client.post("/api/s/pilot/answer", json=_answer_body(trial, idem))
                return idem, r.status_code, r.json()

        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            replies = list(pool.map(submit, keys))
    with app.app_context():
        rows = db.session.scalars(select(Response)).all()
    assert len(rows) == 1, replies
    winner = rows[0].idempotency_key
    assert participant.trial()["position"] == 1  # moved on once
    for idem, status, body in replies:
        if idem == winner:
            assert status == 200 and body["position"] == 1, (idem, status, body)
        else:
            assert status == 409, (idem, status, body)
    firsts = [body for idem, status, body in replies if idem == winner and "duplicate" not in body]
    assert len(firsts) == 1, replies


def test_a_participant_request_is_few_statements_without_transactions_on_postgres(
    pg_app: Any, example_package: Any
) -> None:
    """Issue 31's budget on PostgreSQL: a trial fetch is one statement (the read, with the
    trial marked served in its WITH), an answer two (the read with the clips heard, then the
    session's move and the row in one statement), each in autocommit, so no BEGIN or
    COMMIT round trips: 1 and 2 round trips, were 4 and 7, then 2 and 3."""
    from sqlalchemy import event

    from artifact_schemas import load_key

    with pg_app.app_context():
        result = pg_app.test_cli_runner().invoke(args=["import", str(example_package)])
        assert result.exit_code == 0, result.output
        engine = db.engine
    participant = Participant(pg_app, "pilot", load_key(example_package / "key.json"))
    participant.enter(pid="STMT")
    participant.post_stage("volume")
    seen: list[tuple[str, bool]] = []

    def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append((statement.split()[0], bool(conn.connection.dbapi_connection.autocommit)))

    event.listen(engine, "before_cursor_execute", record)
    try:
        trial = participant.trial()
        fetch, seen[:] = list(seen), []
        participant.go()
        seen.clear()
        body = _answer_body(trial["trial"], "stmt-key-0001")
        response = participant.client.post(
            "/api/s/pilot/answer", json=body, headers={"X-CSRFToken": participant.token}
        )
        answer = list(seen)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, response.get_json()
    assert fetch == [("WITH", True)]
    assert answer == [("SELECT", True), ("WITH", True)]
