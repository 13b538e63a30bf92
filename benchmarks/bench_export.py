"""The response export at scale: rows per second and peak memory, against the rows' size.

Builds a SQLite study database with N responses (the example study imported,
sessions and responses bulk-inserted), then runs ``study-app export --format
parquet`` in a fresh process and reads its peak resident memory. If the export
held every row, memory would grow with N; the streaming design keeps it flat.
``mem_ratio`` is peak memory at N over peak memory at N/10: about 1 means memory
does not grow with N.

``--smoke`` (2,000 rows) runs the code paths in seconds: it runs the code paths; its
numbers mean nothing (tests/study_app/test_bench_export.py runs it).

Usage: python benchmarks/bench_export.py [--quick | --smoke]     (quick: 100k rows; full: 1M)
The last line is ``rows=<n> rows_per_s=<x> peak_mb=<y> mem_ratio=<z>``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = """
[study]
id = "bench"
title = "Export benchmark"
[screening]
kind = "none"
[lists]
count = 4
target_participants = 1000000
[audio]
sample_rate = 16000
"""


def _database(tmp: Path, n_rows: int) -> str:
    sys.path.insert(0, str(ROOT))
    from stimuli_builder.build import build_package
    from stimuli_builder.example import write_example_run

    (tmp / "study.toml").write_text(CONFIG)
    build_package(tmp / "study.toml", write_example_run(tmp / "run"), tmp / "bench")
    db_path = tmp / "bench.sqlite"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db_path}"}
    for args in (["init-db"], ["import", str(tmp / "bench")]):
        subprocess.run([BIN / "study-app", *args], env=env, check=True, capture_output=True)
    conn = sqlite3.connect(db_path)
    study_id, list_id = conn.execute("SELECT study_id, id FROM trial_list LIMIT 1").fetchone()
    trials = [
        r[0] for r in conn.execute("SELECT id FROM trial WHERE study_id = ? AND phase = 'main'", (study_id,))
    ]
    per_session = len(trials)
    n_sessions = max(1, n_rows // per_session)
    now = "2026-11-24 10:00:00.000000"
    with conn:
        for s in range(n_sessions):
            conn.execute(
                "INSERT INTO participant (study_id, pid_hash, created_at) VALUES (?, ?, ?)",
                (study_id, f"{s:064x}", now),
            )
            pid = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.execute(
                "INSERT INTO study_session (token, study_id, list_id, participant_id, status, stage, "
                "shuffle_seed, trial_order, position, screening_attempt, user_agent, screen, ip_hash, "
                "preview, started_at, last_seen_at, finished_at) VALUES (?, ?, ?, ?, 'completed', 'done', "
                "0, '[]', 0, 0, 'bench', '1x1', '', 0, ?, ?, ?)",
                (f"tok{s}", study_id, list_id, pid, now, now, now),
            )
            sid = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.executemany(
                "INSERT INTO response (session_id, trial_id, attempt, position, answer, rating, confidence, "
                "correct, rt_ms, play_counts, client_ts, server_ts, idempotency_key, result) VALUES "
                "(?, ?, 0, ?, NULL, 3, NULL, NULL, 1500.0, ?, NULL, ?, ?, ?)",
                [(sid, t, i, json.dumps({"c": 1}), now, f"k{s}x{i}", "{}") for i, t in enumerate(trials)],
            )
    conn.close()
    return f"sqlite:///{db_path}"


def _export(url: str, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``study-app export`` in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(
        [BIN / "study-app", "export", "bench", "--format", "parquet", "--out", str(out)],
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="2,000 rows: runs the code paths in seconds; its numbers mean nothing",
    )
    args = parser.parse_args()
    n = 2_000 if args.smoke else 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "small").mkdir()
        (tmp / "large").mkdir()
        small_url = _database(tmp / "small", n // 10)
        large_url = _database(tmp / "large", n)
        # Each export runs in a fresh child; RUSAGE_CHILDREN keeps the maximum, so the
        # small one runs first and the large one's peak is read after it.
        _, small_mb = _export(small_url, tmp / "small.parquet")
        seconds, large_mb = _export(large_url, tmp / "large.parquet")
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(tmp / "large.parquet").metadata.num_rows
    print(
        f"export of {rows:,} responses: {seconds:.1f} s, peak {large_mb:.0f} MB "
        f"(at {rows // 10:,}: {small_mb:.0f} MB)"
    )
    ratio = large_mb / small_mb
    print(f"rows={rows} rows_per_s={rows / seconds:.0f} peak_mb={large_mb:.0f} mem_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
