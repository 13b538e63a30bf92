"""benchmarks/bench_app.py runs end to end (smoke: seconds, not a measurement).

The benchmark is what says whether the participant path keeps up with a bare Flask
write (issue 31); when it cannot start (its gunicorn refused the SECRET_KEY it set), no
test noticed. Here it runs for a few seconds at low concurrency and must print its last
line with every acknowledged answer stored once; the ratio itself is not checked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_app_runs_and_loses_nothing(postgres_url: str) -> None:
    args = ["--seconds", "2", "--rounds", "1", "--concurrency", "4", "--think-ms", "100"]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_app.py"), *args],
        env={**os.environ, "TEST_DATABASE_URL": postgres_url},
        capture_output=True,
        text=True,
        timeout=600,  # against a hang: a busy machine slowed start and stop several-fold
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"submit_vs_bare_write=(\S+) p99_ms=(\S+) lost=(\d+) dup=(\d+)", last)
    assert match, run.stdout
    assert float(match[1]) > 0 and float(match[2]) > 0
    assert (match[3], match[4]) == ("0", "0"), run.stdout
    assert "stored 0 answers" not in run.stdout, run.stdout  # the walkers did answer
    # Where the time goes, per side: a meter that found no process would print zeros.
    for side in ("app", "bare write"):
        cpu = re.search(rf"CPU ms per saturated request, {side}: workers (\S+), postgres (\S+),", run.stdout)
        assert cpu and float(cpu[1]) > 0 and float(cpu[2]) > 0, run.stdout


def test_the_cpu_meter_keeps_a_restarted_workers_time() -> None:
    """gunicorn restarts a worker after max_requests: its CPU time must not leave the count
    (it did: the meter summed live workers only). A parent that ran a CPU-bound child to
    its end holds the child's second in its reaped total; the live-process reading misses it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmarks/ is scripts, not a package
    try:
        import bench_app
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"
    run_child = f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {burn!r}])\n"
    script = run_child + "print('reaped', flush=True)\ntime.sleep(60)"
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "reaped"
        assert bench_app._proc_cpu_s(parent.pid, reaped=True) >= 0.8
        assert bench_app._proc_cpu_s(parent.pid) < 0.5  # the child's second is not its own
    finally:
        parent.kill()
        parent.wait()
