"""The study app under load: trial fetch + answer submit against a bare Flask write.

Starts two gunicorns with deploy/gunicorn.conf.py on a fresh PostgreSQL database:
one serves study_app (an example study imported), the other a bare Flask app whose
one endpoint does the least an honest app that stores answers must: it parses a
JSON body, runs one INSERT and one COMMIT and returns ``jsonify(ok=True)``.
``--peer psycopg`` (the default, the stronger peer) holds one psycopg connection
per gunicorn thread, which is what a pool of that size gives; ``--peer sqlalchemy``
adds the row through Flask-SQLAlchemy's ORM, the stack study_app uses.

N simulated participants (threads, one HTTP client and cookie jar each) walk
sessions: fetch the current trial, submit an answer with an idempotency key, pass
the set-up pages, start a new session when one ends; trial fetches and answers are
timed. As many clients post an answer-sized JSON body to the bare write. All of
them have started (each participant consented) before anything is timed.

Two phases:

1. Saturation: no pause at all (a closed loop), so each server runs flat out. The
   app and the bare write take turns (``--rounds`` turns each, after one uncounted
   turn each) so that whatever else the machine does weighs on both alike; the
   app's requests/s over the bare write's is ``submit_vs_bare_write``. Latencies
   here are mostly queueing (concurrency / throughput), printed for reference.
2. Paced: the same participants, each now pausing about ``--think-ms`` (default
   1000 ms) before every request, which is still 10-30 times faster than people who
   listen to clips before answering. The p99 latency of this phase is ``p99_ms``:
   what a participant waits for a trial or an answer while 64 others take part.

The first quarter of every timed turn (all clients starting at once) is left out.
The participants fetch no audio, so the app runs with ``LISTEN_FACTOR=0`` (as for
bots in a pilot): the listening evidence is still looked up and stored with each
answer, only the refusal is off. Every walker comes from 127.0.0.1, so the new
sessions per address limit is raised; CSRF, the cross-origin check, idempotency and
the transactions stay as in production.

After the run the answers the clients got a 200 for are compared with the rows
in the database: ``lost`` = acknowledged but not stored, ``dup`` = stored more
than once (the bare peer's writes are checked the same way). Goal: ratio >= 0.7,
p99 < 50 ms at 64 concurrent, lost = dup = 0. The clients run on the same cores
as the servers, so on a small machine they take a share of the CPU; both servers
hold their connections throughout (2 x workers x threads, 80 on 2 cores).

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
from collections.abc import Callable, Sequence
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


class Server:
    """gunicorn with deploy/gunicorn.conf.py serving ``app_spec`` from ``cwd``."""

    def __init__(self, app_spec: str, env: dict[str, str], cwd: Path) -> None:
        port = _free_port()
        env = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_ACCESSLOG": "/dev/null"}
        self.url = f"http://127.0.0.1:{port}"
        # gunicorn's log goes to a file, not a pipe: a pipe nobody reads fills up under
        # load (worker timeouts log tracebacks) and gunicorn then blocks, even on shutdown.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), app_spec],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_up(self) -> None:
        for _ in range(600):
            if self.proc.poll() is not None:
                break
            try:
                httpx.get(self.url + "/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.kill()
        self.log.seek(0)
        raise RuntimeError(f"gunicorn did not start: {self.log.read().decode(errors='replace')[-3000:]}")

    def stop(self) -> None:
        # Every client has its answer by now: quick shutdown, not a wait for idle keep-alives.
        # On a busy machine that can outlast the wait: then it is killed (what was measured
        # is already counted; the answers are in the database).
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("gunicorn did not stop within 60 s of SIGINT: killed", file=sys.stderr)
            self.kill()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_s(pid: int, reaped: bool = False) -> float:
    """User + system CPU seconds of one process (Linux /proc); 0 once it has gone.

    ``reaped``: add what its children that have exited and been waited for used
    (cutime, cstime). gunicorn restarts a worker after ``max_requests``; the master reaps
    it, so its CPU moves into the master's cutime instead of vanishing from the count."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (fields 16, 17)
    return ticks / _TICK


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class CpuMeter:
    """CPU seconds spent so far by one side: its gunicorn (master and workers), its
    PostgreSQL backends (found by ``application_name``) and this process, the load
    generator (the other side's clients wait behind their gate meanwhile)."""

    def __init__(self, server: Server, db_url: str, application_name: str) -> None:
        self.server, self.db_url, self.application_name = server, db_url, application_name

    def _backends(self) -> list[int]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.application_name,)
            )
            return [int(r[0]) for r in rows]

    def read(self) -> dict[str, float]:
        master = self.server.proc.pid
        return {
            # live workers, plus the master with the workers it has reaped (restarted ones)
            "workers": _proc_cpu_s(master, reaped=True) + sum(_proc_cpu_s(p) for p in _children(master)),
            "postgres": sum(_proc_cpu_s(p) for p in self._backends()),
            "load generator": time.process_time(),
        }


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


class Client(threading.Thread):
    """A load generator's thread: it sends requests while ``gate`` is set, until ``stop``."""

    def __init__(
        self, url: str, stop: threading.Event, started: threading.Barrier, gate: threading.Event
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.started, self.gate = url, stop, started, gate
        self.think_s = 0.0  # pause before each request (0: a closed loop, flat out)
        # (start time, seconds) of every timed request
        self.latencies: list[tuple[float, float]] = []
        self.acked: list[str] = []  # idempotency keys answered with a 200
        self.errors = 0
        self.dropped = 0  # requests whose connection closed under them (see _timed)

    def _go(self) -> bool:
        """Wait for the gate (and think); False when it is time to stop."""
        self.gate.wait()
        if self.think_s:
            self.stop.wait(self.think_s * random.uniform(0.5, 1.5))
        return not self.stop.is_set()

    def _timed(self, send: Callable[..., httpx.Response], path: str, **kwargs: Any) -> httpx.Response | None:
        """The response, timed; None when the connection dropped (counted, not timed).

        gunicorn closes a keep-alive connection idle for ``keepalive`` (5 s): a turn of
        the other side as long as that left every client's next request on a closed
        socket, and a client thread that died of it took no further part (runs with
        --seconds 20 lost 8 of 64 walkers). A browser opens a new connection; so do these."""
        t0 = time.perf_counter()
        try:
            response = send(path, **kwargs)
        except httpx.TransportError:
            self.dropped += 1
            return None
        self.latencies.append((t0, time.perf_counter() - t0))
        return response


class Walker(Client):
    """One simulated participant after another, each in its own cookie jar: trial fetches
    and answers are timed; consent and the set-up pages are not."""

    def __init__(
        self, url: str, stop: threading.Event, started: threading.Barrier, gate: threading.Event
    ) -> None:
        super().__init__(url, stop, started, gate)
        self.client: httpx.Client | None = None
        self.token = ""

    def _enter(self) -> None:
        # A new participant is an empty cookie jar, not a new httpx.Client: making one
        # (its TLS context) costs 17 ms of CPU, which the app's side paid once a session
        # on the cores the servers share; the bare side never did.
        if self.client is None:
            self.client = httpx.Client(base_url=self.url, timeout=30)
        self.client.cookies.clear()
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
        while self._go():
            client = self.client
            assert client is not None
            r = self._timed(client.get, "/api/s/bench/trial")
            if r is None:
                continue
            data = r.json() if r.status_code == 200 else {}
            if "trial" not in data:
                try:
                    self._page(data.get("stage", "done"))
                except httpx.TransportError:
                    self.dropped += 1  # the next trial fetch says where the session is
                continue
            body = answer_body(data["trial"])
            if not self._go():
                break
            headers = {"X-CSRFToken": self.token}
            r = self._timed(client.post, "/api/s/bench/answer", json=body, headers=headers)
            if r is None:
                continue  # the next trial fetch says where the session is
            if r.status_code == 200:
                self.acked.append(body["idempotency_key"])
            else:
                self.errors += 1
        if self.client is not None:
            self.client.close()


class BareClient(Client):
    """Posts an answer-sized JSON body to the bare write, in one connection."""

    # What the trial runner posts, in size and shape.
    TEMPLATE: ClassVar[dict[str, Any]] = {
        "trial_id": "t" * 16,
        "rt_ms": 900,
        "plays": {f"c{i:015d}": 1 for i in range(3)},
        "answer": "o" * 16,
    }

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            self.started.wait()
            while self._go():
                body = {**self.TEMPLATE, "idempotency_key": uuid.uuid4().hex}
                r = self._timed(client.post, "/bare", json=body)
                if r is None:
                    continue
                if r.status_code == 200:
                    self.acked.append(body["idempotency_key"])
                else:
                    self.errors += 1


@dataclass
class Phase:
    latencies: list[float]  # seconds, of the requests started inside the phase's windows
    elapsed: float  # seconds the windows last together

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed


class Load:
    """``concurrency`` walkers on the app and as many clients of the bare write, each side
    behind its own gate, every walker already in a session when the gates first open."""

    def __init__(
        self, app_url: str, bare_url: str, concurrency: int, meters: dict[str, CpuMeter] | None = None
    ) -> None:
        self.meters = meters or {}
        # CPU seconds per part and requests finished, over each side's counted turns
        self.cpu: dict[str, dict[str, float]] = {"app": {}, "bare": {}}
        self.cpu_requests = {"app": 0, "bare": 0}
        self.gates = {"app": threading.Event(), "bare": threading.Event()}
        self.stops = {"app": threading.Event(), "bare": threading.Event()}
        # A client that dies before it is ready breaks the barrier instead of hanging the run.
        barrier = threading.Barrier(2 * concurrency + 1, timeout=300)
        self.clients: dict[str, Sequence[Client]] = {
            "app": [
                Walker(app_url, self.stops["app"], barrier, self.gates["app"]) for _ in range(concurrency)
            ],
            "bare": [
                BareClient(bare_url, self.stops["bare"], barrier, self.gates["bare"])
                for _ in range(concurrency)
            ],
        }
        for side in self.clients.values():
            for c in side:
                c.start()
        barrier.wait()

    def _turn(self, side: str, length: float) -> tuple[float, float]:
        """Open ``side``'s gate for ``length`` seconds; the window to count (its first
        quarter, all clients starting at once, left out)."""
        self.gates[side].set()
        t0 = time.perf_counter()
        time.sleep(length)
        self.gates[side].clear()
        window = (t0 + length / 4, time.perf_counter())
        time.sleep(min(0.5, length / 4))  # the requests in flight finish
        return window

    def _phase(self, side: str, windows: list[tuple[float, float]]) -> Phase:
        return Phase(
            sorted(
                dt
                for c in self.clients[side]
                for start, dt in c.latencies
                if any(a <= start < b for a, b in windows)
            ),
            sum(b - a for a, b in windows),
        )

    def saturate(self, seconds: float, rounds: int) -> tuple[Phase, Phase]:
        """The app and the bare write, each flat out for ``seconds`` in all, taking turns.

        The gates open in turn, ``rounds`` times each, after a first turn each that is
        not counted (every session passes its set-up pages at once there). Taking turns
        in short slices means that whatever else the machine is doing weighs on both
        sides alike; with one phase after the other, a background job that started or
        ended between them weighed on one side only.
        """
        for side in ("app", "bare"):
            self._turn(side, seconds / 4)
        windows: dict[str, list[tuple[float, float]]] = {"app": [], "bare": []}
        for _ in range(rounds):
            for side in ("app", "bare"):
                before = self._cpu(side)
                n_before = self._finished(side)
                windows[side].append(self._turn(side, seconds / rounds))
                after = self._cpu(side)
                for part, value in after.items():
                    self.cpu[side][part] = self.cpu[side].get(part, 0.0) + value - before[part]
                self.cpu_requests[side] += self._finished(side) - n_before
        return self._phase("app", windows["app"]), self._phase("bare", windows["bare"])

    def _cpu(self, side: str) -> dict[str, float]:
        meter = self.meters.get(side)
        return meter.read() if meter else {}

    def _finished(self, side: str) -> int:
        return sum(len(c.latencies) for c in self.clients[side])

    def cpu_ms_per_request(self, side: str) -> dict[str, float]:
        n = max(1, self.cpu_requests[side])
        return {part: 1000 * value / n for part, value in self.cpu[side].items()}

    def end(self, side: str) -> None:
        self.stops[side].set()
        self.gates[side].set()
        for c in self.clients[side]:
            c.join()

    def paced(self, seconds: float, think_s: float) -> Phase:
        """The same walkers, each pausing about ``think_s`` before every request."""
        for c in self.clients["app"]:
            c.think_s = think_s
        return self._phase("app", [self._turn("app", seconds)])

    def acked(self, side: str) -> list[str]:
        return [k for c in self.clients[side] for k in c.acked]

    def errors(self, side: str) -> int:
        return sum(c.errors for c in self.clients[side])

    def dropped(self, side: str) -> int:
        return sum(c.dropped for c in self.clients[side])


def _p(latencies: list[float], q: float) -> float:
    if not latencies:
        return float("nan")
    ordered = sorted(latencies)
    return ordered[int(q * (len(ordered) - 1))] * 1000


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
    parser.add_argument("--quick", action="store_true", help="6 s per phase, 3 rounds (about a minute)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (and per side of saturation)")
    parser.add_argument("--rounds", type=int, default=4, help="turns each side takes in the saturation phase")
    parser.add_argument("--think-ms", type=float, default=1000.0, help="pause between requests (paced phase)")
    parser.add_argument("--peer", choices=sorted(BARE_APPS), default="psycopg", help="the bare write's stack")
    args = parser.parse_args()
    seconds, rounds = (6.0, 3) if args.quick else (args.seconds, args.rounds)

    sys.path.insert(0, str(ROOT))
    from stimuli_builder.build import build_package
    from stimuli_builder.example import write_example_run

    db_name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            (tmp / "study.toml").write_text(CONFIG)
            build_package(tmp / "study.toml", write_example_run(tmp / "run"), tmp / "bench")
            env = {
                # Each side's PostgreSQL backends are told apart by name (CpuMeter).
                "DATABASE_URL": db_url + "?application_name=bench_app",
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

            app = Server("study_app:create_app()", env, ROOT)
            servers.append(app)
            bare = Server(
                "bare_app:create_app()",
                {
                    "SECRET_KEY": env["SECRET_KEY"],
                    "BARE_DATABASE_URL": db_url + "?application_name=bench_bare",
                },
                tmp,
            )
            servers.append(bare)
            app.wait_up()
            bare.wait_up()
            meters = {
                "app": CpuMeter(app, db_url, "bench_app"),
                "bare": CpuMeter(bare, db_url, "bench_bare"),
            }
            load = Load(app.url, bare.url, args.concurrency, meters)
            saturated, bare_phase = load.saturate(seconds, rounds)
            load.end("bare")
            bare.stop()
            paced = load.paced(seconds, args.think_ms / 1000)
            load.end("app")
            app.stop()

        acked, errors = load.acked("app"), load.errors("app")
        n_stored, lost, dup = _check_stored(db_url, "response", acked, per_trial=True)
        bare_acked = load.acked("bare")
        n_bare, bare_lost, bare_dup = _check_stored(db_url, "bare_write", bare_acked, per_trial=False)
    finally:
        for server in servers:
            server.kill()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    print(
        f"concurrency {args.concurrency}, {seconds:g} s per phase (saturation: {rounds} turns "
        f"each), {os.cpu_count()} CPUs (client shares them)"
    )
    print(
        f"saturated app: {saturated.rps:7.1f} req/s (trial fetch + answer), "
        f"p50 {_p(saturated.latencies, 0.5):.1f} ms, p99 {_p(saturated.latencies, 0.99):.1f} ms"
    )
    print(
        f"saturated bare write ({args.peer}, INSERT + COMMIT): {bare_phase.rps:7.1f} req/s, "
        f"p50 {_p(bare_phase.latencies, 0.5):.1f} ms, p99 {_p(bare_phase.latencies, 0.99):.1f} ms; "
        f"stored {n_bare} of {len(bare_acked)} acknowledged ({load.errors('bare')} refused, "
        f"{load.dropped('bare')} connections dropped, "
        f"lost {bare_lost}, dup {bare_dup})"
    )
    print(
        f"paced app ({args.think_ms:.0f} ms think time): {paced.rps:.1f} req/s, "
        f"p50 {_p(paced.latencies, 0.5):.1f} ms, p99 {_p(paced.latencies, 0.99):.1f} ms"
    )
    print(
        f"stored {n_stored} answers for {len(acked)} acknowledged ({errors} refused, "
        f"{load.dropped('app')} connections dropped)"
    )
    for side, name in (("app", "app"), ("bare", "bare write")):
        cpu = load.cpu_ms_per_request(side)
        parts = ", ".join(f"{part} {ms:.2f}" for part, ms in cpu.items())
        print(f"CPU ms per saturated request, {name}: {parts} (total {sum(cpu.values()):.2f})")
    ratio, p99 = saturated.rps / bare_phase.rps, _p(paced.latencies, 0.99)
    print(f"submit_vs_bare_write={ratio:.2f} p99_ms={p99:.1f} lost={lost} dup={dup}")


if __name__ == "__main__":
    main()
