"""Balanced list assignment under concurrent arrivals, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import select, update

from study_app.db import db
from study_app.models import StudySession, TrialList
from study_app.simulate import csrf_token

ARRIVALS = 60


def _arrive(base: str, i: int) -> int:
    with httpx.Client(base_url=base, timeout=60) as client:
        page = client.get(f"/s/pilot?PROLIFIC_PID=bot{i}")
        token = csrf_token(page.text)
        assert token
        form = {"csrf_token": token, "choice": "accept", "PROLIFIC_PID": f"bot{i}"}
        return client.post("/s/pilot/consent", data=form).status_code


def _run_arrivals(app: Flask, package: Path, target: int, serve: Any) -> tuple[Counter[int], dict[int, int]]:
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(package)]).exit_code == 0
        db.session.execute(update(TrialList).values(target=target))
        db.session.commit()
    with serve(app) as server, ThreadPoolExecutor(max_workers=ARRIVALS) as pool:
        codes = Counter(pool.map(lambda i: _arrive(server.url, i), range(ARRIVALS)))
    with app.app_context():
        per_list = Counter(db.session.scalars(select(StudySession.list_id)).all())
        targets = {lst.id: lst.target for lst in db.session.scalars(select(TrialList))}
    return codes, {k: per_list.get(k, 0) for k in targets}


@pytest.mark.parametrize("target", [100, 5])
def test_concurrent_arrivals_sqlite(app: Flask, example_package: Path, serve: Any, target: int) -> None:
    _check(*_run_arrivals(app, example_package, target, serve), target)


@pytest.mark.parametrize("target", [100, 5])
def test_concurrent_arrivals_postgres(pg_app: Flask, example_package: Path, serve: Any, target: int) -> None:
    _check(*_run_arrivals(pg_app, example_package, target, serve), target)


def _check(codes: Counter[int], per_list: dict[int, int], target: int) -> None:
    n_lists = len(per_list)
    expected = min(ARRIVALS, target * n_lists)
    assert codes[302] == expected, codes  # redirected into a session
    assert codes[503] == ARRIVALS - expected, codes  # "study full" for the rest
    assert sum(per_list.values()) == expected
    assert max(per_list.values()) - min(per_list.values()) <= 1, per_list
    assert max(per_list.values()) <= target


def test_inactive_sessions_release_their_slot(new_participant: Any, study_app: tuple[Flask, Any]) -> None:
    from datetime import timedelta

    from study_app.models import utcnow

    app, _ = study_app
    with app.app_context():
        db.session.execute(update(TrialList).values(target=1))
        db.session.commit()
    for _ in range(4):
        assert new_participant().enter().status_code == 302
    assert new_participant().enter().status_code == 503  # every list is full
    with app.app_context():
        stale = db.session.scalars(select(StudySession).order_by(StudySession.id)).first()
        assert stale is not None
        freed_list = stale.list_id
        stale.last_seen_at = utcnow() - timedelta(seconds=app.config["SESSION_TIMEOUT_S"] + 1)
        db.session.commit()
    assert new_participant().enter().status_code == 302
    with app.app_context():
        newest = db.session.scalars(select(StudySession).order_by(StudySession.id.desc())).first()
        assert newest is not None and newest.list_id == freed_list
