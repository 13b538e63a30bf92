"""benchmarks/bench_analysis.py runs end to end (smoke: seconds, not a measurement)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_analysis_smoke_prints_its_ratio() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_analysis.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert re.fullmatch(r"seconds=\d+\.\d\d read_ratio=\d+", lines[-1]), run.stdout
    assert "responses; read" in lines[-2] and "not timed" in lines[-2]
