"""Run a benchmark script the way a user does and read its last line (the smoke tests).

Each benchmark prints ``name=value`` fields as its last line; a smoke test runs it for
seconds in a fresh interpreter and checks what a user would read there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, timeout: float = 230) -> tuple[str, dict[str, str]]:
    """Run ``benchmarks/<script>`` with ``args``; its stdout and its last line's fields.

    Fails the test, with the end of stderr, when it exits non-zero or prints a traceback."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    return run.stdout, dict(token.split("=", 1) for token in last.split() if "=" in token)
