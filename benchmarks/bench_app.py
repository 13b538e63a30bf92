"""The study app under load: trial fetch + answer submit against a bare Flask endpoint.

Starts PostgreSQL-backed gunicorn with deploy/gunicorn.conf.py serving study_app
(an example study imported), and the same gunicorn config serving a bare Flask
app whose one endpoint returns ``jsonify(ok=True)``. N concurrent simulated
participants (threads, one HTTP client and cookie jar each) walk sessions: fetch
the current trial, submit an answer with an idempotency key, move through the
page stages, start a new session when one ends. The bare run sends GETs with the
same concurrency for the same time. Both phases are timed only after the
participants have entered (consent is not part of the loop).

Two phases:

1. Saturation: the participants answer with no pause at all (a closed loop), so
   the app runs flat out; its requests/s over the bare endpoint's requests/s at the
   same concurrency is ``submit_vs_bare``. The latencies here are mostly queueing
   (concurrency / throughput) and are printed for reference.
2. Paced: the same number of participants, each pausing ``--think-ms`` (default
   1000 ms) between requests, which is still 10-30 times faster than people who
   listen to clips before answering. The p99 latency of this phase is ``p99_ms``:
   what a participant waits for a trial or an answer while 64 others take part.

After the run the answers the clients got a 200 for are compared with the rows
in the database: ``lost`` = acknowledged but not stored, ``dup`` = stored more
than once. Goal: ratio >= 0.5, p99 < 50 ms at 64 concurrent, lost = dup = 0.
The client runs on the same cores as the server, so on a small machine it takes
a share of the CPU in both phases.

Needs PostgreSQL (TEST_DATABASE_URL or postgres@127.0.0.1:5432, trust auth).
Usage: python benchmarks/bench_app.py [--quick] [--concurrency 64] [--seconds 20]
The last line is ``submit_vs_bare=<x> p99_ms=<y> lost=<n> dup=<m>``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from study_app.simulate import csrf_token

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
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
BARE_APP = """
from flask import Flask, jsonify

def create_app():
    app = Flask(__name__)

    @app.get("/bare")
    def bare():
        return jsonify(ok=True)

    return app
"""


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
    for _ in range(200):
        try:
            httpx.get(url + "/", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gunicorn did not start: {proc.stderr.read().decode() if proc.stderr else ''}")


class Walker(threading.Thread):
    """One simulated participant after another, each in its own cookie jar."""

    def __init__(
        self, url: str, stop: threading.Event, started: threading.Barrier, think_s: float = 0.0
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.started, self.think_s = url, stop, started, think_s
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
            if self.think_s:
                self.stop.wait(self.think_s * random.uniform(0.5, 1.5))
            t0 = time.perf_counter()
            r = self.client.post("/api/s/bench/answer", json=body, headers={"X-CSRFToken": self.token})
            self.latencies.append((t0, time.perf_counter() - t0))
            if r.status_code == 200:
                self.acked.append(body["idempotency_key"])
            else:
                self.errors += 1


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
    ordered = sorted(latencies)
    return ordered[int(q * (len(ordered) - 1))] * 1000


def _bare_load(url: str, concurrency: int, seconds: float) -> tuple[int, list[float]]:
    stop = threading.Event()
    counts = [0] * concurrency
    lat: list[list[float]] = [[] for _ in range(concurrency)]

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                client.get("/bare")
                lat[i].append(time.perf_counter() - t0)
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts), [x for xs in lat for x in xs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s per phase instead of --seconds")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--think-ms", type=float, default=1000.0, help="pause between requests (paced phase)")
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
                "SECRET_KEY": "bench",
                "SESSIONS_PER_IP_PER_MINUTE": "1000000",
            }
            for cmd in (["init-db"], ["import", str(tmp / "bench")]):
                subprocess.run(
                    [str(BIN / "study-app"), *cmd],
                    env={**os.environ, **env},
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
            (tmp / "bare_app.py").write_text(BARE_APP)

            app_proc, app_url = _gunicorn("study_app:create_app()", env, ROOT)
            procs.append(app_proc)
            saturated = _walk(app_url, args.concurrency, seconds, 0.0)
            paced = _walk(app_url, args.concurrency, seconds, args.think_ms / 1000)
            app_proc.send_signal(signal.SIGTERM)
            app_proc.wait(timeout=30)
            app_rps = len(saturated.latencies) / saturated.elapsed
            acked = saturated.acked + paced.acked
            errors = saturated.errors + paced.errors

            bare_proc, bare_url = _gunicorn("bare_app:create_app()", {}, tmp)
            procs.append(bare_proc)
            n_bare, bare_lat = _bare_load(bare_url, args.concurrency, seconds)
            bare_rps = n_bare / seconds

        with psycopg.connect(db_url) as conn:
            stored = [r[0] for r in conn.execute("SELECT idempotency_key FROM response")]
            per_trial = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM response GROUP BY session_id, trial_id, attempt "
                "HAVING count(*) > 1) d"
            ).fetchone()
        stored_set = set(stored)
        lost = sum(1 for k in acked if k not in stored_set)
        dup = (len(stored) - len(stored_set)) + (per_trial[0] if per_trial else 0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    print(
        f"concurrency {args.concurrency}, {seconds:.0f} s per phase, "
        f"{os.cpu_count()} CPUs (client shares them)"
    )
    print(
        f"saturated app: {app_rps:7.1f} req/s (trial fetch + answer), "
        f"p50 {_p(saturated.latencies, 0.5):.1f} ms, p99 {_p(saturated.latencies, 0.99):.1f} ms"
    )
    print(f"saturated bare: {bare_rps:6.1f} req/s (jsonify), p99 {_p(bare_lat, 0.99):.1f} ms")
    print(
        f"paced app ({args.think_ms:.0f} ms think time): {len(paced.latencies) / paced.elapsed:.1f} req/s, "
        f"p50 {_p(paced.latencies, 0.5):.1f} ms, p99 {_p(paced.latencies, 0.99):.1f} ms"
    )
    print(f"stored {len(stored)} answers for {len(acked)} acknowledged ({errors} refused)")
    ratio, p99 = app_rps / bare_rps, _p(paced.latencies, 0.99)
    print(f"submit_vs_bare={ratio:.2f} p99_ms={p99:.1f} lost={lost} dup={dup}")


if __name__ == "__main__":
    main()
