"""benchmarks/bench_costs.py runs end to end (smoke: seconds, not a measurement).

The benchmark writes the per-frame costs ``sae-core plan`` derives its times from. Its
``--smoke`` mode runs the same steps (a teacher-forced forward capturing the paper's layers,
SAE training steps, a matmul) on the tiny MusicGen preset and a small SAE, and records the
forward scaled to musicgen-small. Here its last
line must carry the three numbers, finite and positive, and the file it wrote must be one
the plan reads (a costs file the plan refuses is what a user would hit). The numbers
themselves mean nothing; the shipped ``sae_core/plan_costs.json`` must stay untouched.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.bench_smoke import run_benchmark


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_costs_smoke_writes_a_costs_file_the_plan_reads(tmp_path: Path) -> None:
    from sae_core.plan import COSTS, PlanConfig, load_costs, plan

    shipped = COSTS.read_bytes()
    out = tmp_path / "costs.json"
    stdout, fields = run_benchmark("bench_costs.py", "--smoke", "--threads", "1", "--out", str(out))
    assert set(fields) == {"forward_frames_per_s", "sae_tokens_per_s", "forward_vs_matmul"}, stdout
    for value in fields.values():
        assert math.isfinite(float(value)) and float(value) > 0, stdout
    costs = load_costs(out)
    assert "smoke" in json.loads(out.read_text()), costs
    estimate = plan(PlanConfig(clips=100, clip_seconds=10.0, costs=out))
    assert all(math.isfinite(v) for path in estimate.paths.values() for v in path.values())
    assert COSTS.read_bytes() == shipped
