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
