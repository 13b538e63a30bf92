"""benchmarks/bench_hooks.py runs end to end (smoke: seconds, not a measurement).

The benchmark says what activation capture and steering cost against the same forward and
generation without them. Here it runs in ``--smoke`` mode (one 1 s window, 0.2 s of
generation, two rounds) on the tiny MusicGen it builds itself; its last line must carry
both overheads as finite positive numbers, and what it timed must have done the work: the
capture hooks recorded both layers and the intervention changed generated tokens (a hook
that did nothing would cost nothing and look like a win). The ratios are not checked.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.bench_smoke import run_benchmark


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_hooks_smoke_prints_both_overheads() -> None:
    stdout, fields = run_benchmark("bench_hooks.py", "--smoke", "--threads", "1")
    assert set(fields) == {"capture_overhead", "steering_overhead"}, stdout
    for value in fields.values():
        assert math.isfinite(float(value)) and float(value) > 0, stdout
    recorded = re.search(
        r"captured layer 1 \(1, \d+, \d+\), layer 3 \(1, \d+, \d+\); steering changed (\d+)%", stdout
    )
    assert recorded, stdout
    assert int(recorded[1]) > 0, stdout
