"""The production stack on this machine: PostgreSQL + gunicorn (deploy config) + nginx (deploy config).

Bot participants with --chaos go through nginx while one gunicorn worker is
SIGKILLed and PostgreSQL is restarted. Afterwards every answer a bot sent is
stored exactly once, every session finished, and audio comes from nginx with
Range support.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from artifact_schemas import load_key, load_study
from study_app.simulate import BotConfig, csrf_token, run_bots


def _workers(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


@pytest.mark.slow
def test_stack_survives_worker_kill_and_postgres_restart(
    private_postgres: Any, production_stack: Any, served_demo: Path, capsys: Any
) -> None:
    demo_package = served_demo
    env = {
        "SECRET_KEY": "stack test key of 32 characters, ok",
        "SESSIONS_PER_IP_PER_MINUTE": "100000",
        "GUNICORN_WORKERS": "3",
    }
    with production_stack(demo_package, env) as stack:
        url, gunicorn = stack.url, stack.gunicorn
        manifest, key = load_study(demo_package / "study.json"), load_key(demo_package / "key.json")
        cfg = BotConfig(
            participants=24,
            concurrency=8,
            accuracy=0.8,
            steer_accuracy=0.6,
            fail_screening=0.1,
            chaos=True,
            seed=9,
            pace=0.03,
        )
        results: list[Any] = []
        bots = threading.Thread(target=lambda: results.extend(run_bots(url, "demo", manifest, key, cfg)))
        bots.start()
        time.sleep(2.0)
        workers = _workers(gunicorn.pid)
        assert len(workers) == 3
        os.kill(workers[0], signal.SIGKILL)  # gunicorn replaces it; in-flight requests are retried
        time.sleep(1.5)
        private_postgres.restart()  # every pooled connection dies at once
        bots.join(timeout=240)
        assert not bots.is_alive(), "bots did not finish"
        assert workers[0] not in _workers(gunicorn.pid) and len(_workers(gunicorn.pid)) == 3

        # Audio through nginx: the app checks access, nginx sends the bytes, Range works.
        client = httpx.Client(base_url=url)
        page = client.get(f"/s/demo?PROLIFIC_PID={'c' * 24}")  # Prolific's id format
        token = csrf_token(page.text)
        assert token
        client.post("/s/demo/consent", data={"csrf_token": token, "choice": "accept"})
        client.post("/s/demo/volume", data={"csrf_token": token})
        trial = client.get("/api/s/demo/trial").json()["trial"]
        clip = trial["references"][0]
        part = client.get(clip["url"], headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.headers["Content-Range"].startswith("bytes 0-99/")
        assert part.content == (demo_package / manifest.clips[clip["id"]].file).read_bytes()[:100]
        assert "immutable" in part.headers["Cache-Control"] and part.headers["Server"].startswith("nginx")
        # ETags are the opaque clip ids, not nginx's mtime-size (equal for equal sizes).
        for url_ in [clip["url"], *client.get("/api/s/demo/trial").json()["preload"]]:
            clip_id = url_.split("?", 1)[0].rsplit("/", 1)[1]  # the URL carries ?s=<session tag>
            assert client.get(url_).headers.get("ETag") == f'"{clip_id}"', url_
        assert (
            client.get(f"/_audio/demo/{manifest.clips[clip['id']].file}").status_code == 404
        )  # internal only

    sent = set().union(*(r.sent for r in results))
    with psycopg.connect(private_postgres.url) as conn:
        stored = {row[0] for row in conn.execute("SELECT idempotency_key FROM response")}
        n_rows = conn.execute("SELECT count(*) FROM response").fetchone()[0]  # type: ignore[index]
        statuses = dict(conn.execute("SELECT status, count(*) FROM study_session GROUP BY status").fetchall())
    with capsys.disabled():  # shown in the CI log, not only on failure
        print(f"\nstack test: sent={len(sent)} stored={len(stored & sent)} duplicates={n_rows - len(stored)}")
    assert stored == sent and n_rows == len(sent) > 300
    assert sorted(r.status for r in results) == sorted(
        ["completed"] * statuses.get("completed", 0) + ["screened_out"] * statuses.get("screened_out", 0)
    )
    assert statuses.get("active", 0) == 1  # only the listener above, who can resume
