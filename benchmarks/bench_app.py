"""The study app under load: trial fetch + answer submit against a bare Flask write.

Starts PostgreSQL-backed gunicorn with deploy/gunicorn.conf.py serving study_app
(an example study imported), and the same gunicorn config serving a bare Flask
app whose one endpoint does the least an honest app that stores answers must: it
parses a JSON body, runs one INSERT and one COMMIT on PostgreSQL and returns
``jsonify(ok=True)``. ``--peer psycopg`` (the default, the stronger of the two
here) holds one psycopg connection per gunicorn thread, which is what a pool of
that size gives; ``--peer sqlalchemy`` adds a row through Flask-SQLAlchemy's
ORM, the stack study_app uses. N concurrent simulated participants (threads,
one HTTP client and cookie jar each) walk sessions: fetch the current trial,
submit an answer with an idempotency key, move through the page stages, start a
new session when one ends. The bare run posts an answer-sized JSON body with the
same concurrency for the same time. Both phases are timed only after the clients
have started (consent is not part of the loop).

Two phases:

1. Saturation: the participants answer with no pause at all (a closed loop), so
   the app runs flat out; its requests/s over the bare write's requests/s at the
   same concurrency is ``submit_vs_bare_write``. The latencies here are mostly
   queueing (concurrency / throughput) and are printed for reference.
2. Paced: the same number of participants, each pausing ``--think-ms`` (default
   1000 ms) between requests, which is still 10-30 times faster than people who
   listen to clips before answering. The p99 latency of this phase is ``p99_ms``:
   what a participant waits for a trial or an answer while 64 others take part.

The participants fetch no audio, so the app runs with ``LISTEN_FACTOR=0`` (as for
bots in a pilot): the listening evidence is still looked up and stored with each
answer, only the refusal is off. CSRF, the cross-origin check, rate limits and
idempotency stay as in production.

After the run the answers the clients got a 200 for are compared with the rows
in the database: ``lost`` = acknowledged but not stored, ``dup`` = stored more
than once (the bare peer's writes are checked the same way). Goal: ratio >= 0.7,
p99 < 50 ms at 64 concurrent, lost = dup = 0. The client runs on the same cores
as the server, so on a small machine it takes a share of the CPU in both phases.

Needs PostgreSQL (TEST_DATABASE_URL or postgres@127.0.0.1:5432, trust auth).
Usage: python benchmarks/bench_app.py [--quick] [--concurrency 64] [--seconds 20] [--peer psycopg]
The last line is ``submit_vs_bare_write=<x> p99_ms=<y> lost=<n> dup=<m>``.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import psycopg

from study_app.simulate import csrf_token

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres").replace(
    "postgresql+psycopg://", "postgresql://"
)
CONFIG = """
[study]
id = "bench"
title = "Benchmark"
seed = 1
[label_validation]
formats = ["choice", "rating"]
[steering]
mode = "two_way"
[screening]
kind = "none"
[lists]
count = 4
target_participants = 100000
[audio]
sample_rate = 16000
"""
BARE_TABLE = """
CREATE TABLE bare_write (
    id bigserial PRIMARY KEY,
    idempotency_key varchar(64) NOT NULL UNIQUE,
    body json NOT NULL,
    server_ts timestamptz NOT NULL DEFAULT now()
)
"""
# The peers: one INSERT + COMMIT per request, nothing else.
BARE_APPS = {
    "psycopg": """
import json
import os
import threading

import psycopg
from flask import Flask, jsonify, request

INSERT = "INSERT INTO bare_write (idempotency_key, body) VALUES (%s, %s)"


def create_app():
    app = Flask(__name__)
    url = os.environ["BARE_DATABASE_URL"]
    local = threading.local()  # one connection per gunicorn thread: a pool of that size

    @app.post("/bare")
    def bare():
        body = request.get_json()
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg.connect(url)
        conn.execute(INSERT, (body["idempotency_key"], json.dumps(body)))
        conn.commit()
        return jsonify(ok=True)

    return app
""",
    "sqlalchemy": """
import os

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class BareWrite(db.Model):
    __tablename__ = "bare_write"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[dict] = mapped_column(JSON)


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BARE_DATABASE_URL"].replace(
        "postgresql://", "postgresql+psycopg://", 1
    )
    db.init_app(app)

    @app.post("/bare")
    def bare():
        body = request.get_json()
        db.session.add(BareWrite(idempotency_key=body["idempotency_key"], body=body))
        db.session.commit()
        return jsonify(ok=True)

    return app
""",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gunicorn(app_spec: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_ACCESSLOG": "/dev/null"}
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), app_spec],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if proc.poll() is not None:
            break
        try:
            httpx.get(url + "/", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gunicorn did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


class Walker(threading.Thread):
    """One simulated participant after another, each in its own cookie jar."""

    def __init__(
        self,
        url: str,
        stop: threading.Event,
        started: threading.Barrier,
        think_s: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.started, self.think_s = url, stop, started, think_s
        self.gate = gate  # while set, walk; while clear, wait (the saturation phase takes turns)
        # (start time, seconds) of every trial fetch and answer submit
        self.latencies: list[tuple[float, float]] = []
        self.acked: list[str] = []
        self.errors = 0
        self.client: httpx.Client | None = None
        self.token = ""

    def _enter(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = httpx.Client(base_url=self.url, timeout=30)
        page = self.client.get("/s/bench")
        token = csrf_token(page.text)
        assert token, "the consent page has no CSRF token"
        self.token = token
        self.client.post("/s/bench/consent", data={"csrf_token": self.token, "choice": "accept"})

    def _page(self, stage: str) -> None:
        assert self.client is not None
        form = {"csrf_token": self.token}
        if stage == "questionnaire":
            self.client.post("/s/bench/questionnaire", data=form)
        elif stage in ("volume", "instructions"):
            self.client.post(f"/s/bench/{stage}", data=form)
        else:
            self._enter()

    def run(self) -> None:
        self._enter()
        self.started.wait()
        while not self.stop.is_set():
            assert self.client is not None
            if self.gate is not None:
                self.gate.wait()
            if self.think_s:
                self.stop.wait(self.think_s * random.uniform(0.5, 1.5))
            t0 = time.perf_counter()
            r = self.client.get("/api/s/bench/trial")
            self.latencies.append((t0, time.perf_counter() - t0))
            data = r.json() if r.status_code == 200 else {}
            if "trial" not in data:
                self._page(data.get("stage", "done"))
                continue
            t = data["trial"]
            body = answer_body(t)
            if self.think_s:
                self.stop.wait(self.think_s * random.uniform(0.5, 1.5))
            t0 = time.perf_counter()
            r = self.client.post("/api/s/bench/answer", json=body, headers={"X-CSRFToken": self.token})
            self.latencies.append((t0, time.perf_counter() - t0))
            if r.status_code == 200:
                self.acked.append(body["idempotency_key"])
            else:
                self.errors += 1


def answer_body(t: dict[str, Any]) -> dict[str, Any]:
    """What the trial runner posts for trial ``t`` (the first option, the lowest rating)."""
    body: dict[str, Any] = {
        "idempotency_key": uuid.uuid4().hex,
        "trial_id": t["id"],
        "rt_ms": 900,
        "plays": {c["id"]: 1 for c in (*t["references"], *t["candidates"])},
    }
    if t["options"]:
        body["answer"] = t["options"][0]["id"]
    if t["rating"]:
        body["rating"] = t["rating"]["min"]
    if t["confidence"]:
        body["confidence"] = t["confidence"]["min"]
    return body


@dataclass
class Phase:
    latencies: list[float]
    acked: list[str]
    errors: int
    elapsed: float


def _walk(url: str, concurrency: int, seconds: float, think_s: float) -> Phase:
    """Run ``concurrency`` walkers; keep the requests after a warm-up of a quarter of the phase.

    The warm-up drops the burst of all walkers' first requests (they start together)
    and connection set-up, which no steady state has.
    """
    stop = threading.Event()
    barrier = threading.Barrier(concurrency + 1)
    walkers = [Walker(url, stop, barrier, think_s) for _ in range(concurrency)]
    for w in walkers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    warm = t0 + seconds / 4
    time.sleep(seconds)
    stop.set()
    end = time.perf_counter()
    for w in walkers:
        w.join()
    return Phase(
        sorted(dt for w in walkers for start, dt in w.latencies if warm <= start < end),
        [k for w in walkers for k in w.acked],
        sum(w.errors for w in walkers),
        end - warm,
    )


def _p(latencies: list[float], q: float) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[int(q * (len(ordered) - 1))] * 1000


class BareClient(threading.Thread):
    """Posts an answer-sized JSON body to the bare write in a closed loop while ``gate`` is set."""

    # What the trial runner posts, in size and shape.
    TEMPLATE: ClassVar[dict[str, Any]] = {
        "trial_id": "t" * 16,
        "rt_ms": 900,
        "plays": {f"c{i:015d}": 1 for i in range(3)},
        "answer": "o" * 16,
    }

    def __init__(
        self, url: str, stop: threading.Event, started: threading.Barrier, gate: threading.Event
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.started, self.gate = url, stop, started, gate
        self.latencies: list[tuple[float, float]] = []
        self.acked: list[str] = []
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            self.started.wait()
            while not self.stop.is_set():
                self.gate.wait()
                body = {**self.TEMPLATE, "idempotency_key": uuid.uuid4().hex}
                t0 = time.perf_counter()
                r = client.post("/bare", json=body)
                self.latencies.append((t0, time.perf_counter() - t0))
                if r.status_code == 200:
                    self.acked.append(body["idempotency_key"])
                else:
                    self.errors += 1


def _saturate(
    app_url: str, bare_url: str, concurrency: int, seconds: float, rounds: int
) -> tuple[Phase, Phase]:
    """The app and the bare write, each flat out for ``seconds`` in all, taking turns.

    Both servers are up; ``concurrency`` walkers and as many bare clients wait at their
    gates, and the gates open in turn, ``rounds`` times each. Taking turns in short
    slices means that whatever else the machine is doing weighs on both sides alike,
    which one phase after the other did not: on a shared machine a background job
    starting between the phases moved the ratio by half. The first quarter of each
    slice (all clients starting at once) is not counted.
    """
    stop = threading.Event()
    gates = {"app": threading.Event(), "bare": threading.Event()}
    barrier = threading.Barrier(2 * concurrency + 1)
    walkers = [Walker(app_url, stop, barrier, 0.0, gates["app"]) for _ in range(concurrency)]
    bares = [BareClient(bare_url, stop, barrier, gates["bare"]) for _ in range(concurrency)]
    for t in (*walkers, *bares):
        t.start()
    barrier.wait()
    windows: dict[str, list[tuple[float, float]]] = {"app": [], "bare": []}
    slice_s = seconds / rounds
    for _ in range(rounds):
        for side in ("app", "bare"):
            gates[side].set()
            t0 = time.perf_counter()
            time.sleep(slice_s)
            gates[side].clear()
            windows[side].append((t0 + slice_s / 4, time.perf_counter()))
            time.sleep(min(0.5, slice_s / 4))  # the requests in flight finish
    stop.set()
    for gate in gates.values():
        gate.set()
    for t in (*walkers, *bares):
        t.join()

    def phase(side: str, clients: Sequence[Walker | BareClient]) -> Phase:
        spans = windows[side]
        return Phase(
            sorted(dt for c in clients for start, dt in c.latencies if any(a <= start < b for a, b in spans)),
            [k for c in clients for k in c.acked],
            sum(c.errors for c in clients),
            sum(b - a for a, b in spans),
        )

    return phase("app", walkers), phase("bare", bares)


def _check_stored(db_url: str, table: str, acked: list[str], per_trial: bool) -> tuple[int, int, int]:
    """(rows stored, lost, dup) of ``table`` against the keys acknowledged with a 200."""
    with psycopg.connect(db_url) as conn:
        stored = [r[0] for r in conn.execute(f"SELECT idempotency_key FROM {table}")]
        twice = 0
        if per_trial:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM response GROUP BY session_id, trial_id, attempt "
                "HAVING count(*) > 1) d"
            ).fetchone()
            twice = row[0] if row else 0
    stored_set = set(stored)
    lost = sum(1 for k in acked if k not in stored_set)
    return len(stored), lost, (len(stored) - len(stored_set)) + twice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s per phase instead of --seconds")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (and per side of saturation)")
    parser.add_argument("--rounds", type=int, default=4, help="turns each side takes in the saturation phase")
    parser.add_argument("--think-ms", type=float, default=1000.0, help="pause between requests (paced phase)")
    parser.add_argument("--peer", choices=sorted(BARE_APPS), default="psycopg", help="the bare write's stack")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else args.seconds

    sys.path.insert(0, str(ROOT))
    from stimuli_builder.build import build_package
    from stimuli_builder.example import write_example_run

    db_name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            (tmp / "study.toml").write_text(CONFIG)
            build_package(tmp / "study.toml", write_example_run(tmp / "run"), tmp / "bench")
            env = {
                "DATABASE_URL": db_url,
                "SECRET_KEY": secrets.token_hex(32),  # gunicorn refuses to start without one
                "SESSIONS_PER_IP_PER_MINUTE": "1000000",  # every participant comes from 127.0.0.1
                "LISTEN_FACTOR": "0",  # the walkers fetch no audio (see above)
            }
            for cmd in (["init-db"], ["import", str(tmp / "bench")]):
                subprocess.run(
                    [str(BIN / "study-app"), *cmd],
                    env={**os.environ, **env},
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(BARE_TABLE)
            (tmp / "bare_app.py").write_text(BARE_APPS[args.peer])

            app_proc, app_url = _gunicorn("study_app:create_app()", env, ROOT)
            procs.append(app_proc)
            bare_env = {"SECRET_KEY": env["SECRET_KEY"], "BARE_DATABASE_URL": db_url}
            bare_proc, bare_url = _gunicorn("bare_app:create_app()", bare_env, tmp)
            procs.append(bare_proc)
            saturated, bare = _saturate(app_url, bare_url, args.concurrency, seconds, args.rounds)
            _stop(bare_proc)
            paced = _walk(app_url, args.concurrency, seconds, args.think_ms / 1000)
            _stop(app_proc)

        acked = saturated.acked + paced.acked
        errors = saturated.errors + paced.errors
        n_stored, lost, dup = _check_stored(db_url, "response", acked, per_trial=True)
        n_bare, bare_lost, bare_dup = _check_stored(db_url, "bare_write", bare.acked, per_trial=False)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    app_rps = len(saturated.latencies) / saturated.elapsed
    bare_rps = len(bare.latencies) / bare.elapsed
    print(
        f"concurrency {args.concurrency}, {seconds:g} s per phase (saturation: {args.rounds} turns "
        f"each), {os.cpu_count()} CPUs (client shares them)"
    )
    print(
        f"saturated app: {app_rps:7.1f} req/s (trial fetch + answer), "
        f"p50 {_p(saturated.latencies, 0.5):.1f} ms, p99 {_p(saturated.latencies, 0.99):.1f} ms"
    )
    print(
        f"saturated bare write ({args.peer}, INSERT + COMMIT): {bare_rps:7.1f} req/s, "
        f"p50 {_p(bare.latencies, 0.5):.1f} ms, p99 {_p(bare.latencies, 0.99):.1f} ms; "
        f"stored {n_bare} of {len(bare.acked)} acknowledged ({bare.errors} refused, "
        f"lost {bare_lost}, dup {bare_dup})"
    )
    print(
        f"paced app ({args.think_ms:.0f} ms think time): {len(paced.latencies) / paced.elapsed:.1f} req/s, "
        f"p50 {_p(paced.latencies, 0.5):.1f} ms, p99 {_p(paced.latencies, 0.99):.1f} ms"
    )
    print(f"stored {n_stored} answers for {len(acked)} acknowledged ({errors} refused)")
    ratio, p99 = app_rps / bare_rps, _p(paced.latencies, 0.99)
    print(f"submit_vs_bare_write={ratio:.2f} p99_ms={p99:.1f} lost={lost} dup={dup}")


if __name__ == "__main__":
    main()
