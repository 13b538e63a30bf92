"""sae-core plan: the paper's experiment in disk, memory and time, from measured costs (issue 22.2c)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sae_core.plan import COSTS, PlanConfig, plan

BIN = Path(sys.executable).parent
COSTS_BODY = {
    "machine": "Test GPU",
    "measured": "2026-12-01",
    "forward": {"model": "musicgen-small", "frames_per_s": 1000.0},
    "sae": {"d_in": 1024, "latents": 8192, "tokens_per_s": 10000.0},
}


@pytest.fixture
def costs(tmp_path: Path) -> Path:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(COSTS_BODY))
    return path


def test_the_papers_experiment_on_large_needs_terabytes_only_when_extracted(costs: Path) -> None:
    cfg = PlanConfig(
        clips=160_000, clip_seconds=10, model="musicgen-large", layers=5, expansion=32, costs=costs
    )
    result = plan(cfg)
    assert result.frames == 80_000_000  # 160k clips x 10 s x 50 frames/s
    extract, online = result.paths["extract then train"], result.paths["online"]
    # Activations: 80M frames x 5 layers x 2048 dims x 2 bytes = 1.64 TB (+ the checkpoints).
    assert extract["disk_gb"] - online["disk_gb"] == pytest.approx(80e6 * 5 * 2048 * 2 / 1e9)
    assert online["disk_gb"] < 20  # five SAEs of 65,536 latents with their Adam state
    assert online["memory_gb"] > extract["memory_gb"]  # the model and the SAEs at once
    # Same compute either way: the forward scaled from small by decoder parameters
    # (3.26 B / 0.42 B), the SAE from 1024 x 8192 to 2048 x 65536 (16x the work per token).
    forward_h = 80e6 / (1000 * 0.4196 / 3.2554) / 3600
    sae_h = 80e6 * 5 / (10000 / 16) / 3600
    assert extract["hours"] == online["hours"] == pytest.approx(forward_h + sae_h, rel=1e-3)
    quarter = plan(
        PlanConfig(clips=160_000, clip_seconds=10, model="musicgen-large", keep_fraction=0.25, costs=costs)
    )
    assert quarter.paths["extract then train"]["disk_gb"] - quarter.paths["online"][
        "disk_gb"
    ] == pytest.approx(0.25 * 80e6 * 5 * 2048 * 2 / 1e9)
    two = plan(PlanConfig(clips=160_000, clip_seconds=10, model="musicgen-large", devices=2, costs=costs))
    assert two.paths["extract then train"]["hours"] == pytest.approx(extract["hours"] / 2)


def test_data_parallel_divides_the_forward_and_pays_an_all_reduce_per_step(costs: Path) -> None:
    """Issue 38: on N devices the tracks split (the forward divides) and every step sums the
    SAEs' gradients; dealing the layers instead runs the whole forward on every device."""
    one = plan(PlanConfig(clips=160_000, clip_seconds=10, model="musicgen-large", costs=costs))
    eight = plan(PlanConfig(clips=160_000, clip_seconds=10, model="musicgen-large", devices=8, costs=costs))
    assert set(one.paths) == {"extract then train", "online"}
    data, dealt = eight.paths["online, data-parallel"], eight.paths["online, layers dealt"]
    forward_h = 80e6 / (1000 * 0.4196 / 3.2554) / 3600
    sae_h = 80e6 * 5 / (10000 / 16) / 3600  # five layers
    # 80M frames in steps of 8 x 4096; each all-reduces five SAEs' fp32 gradients
    # (2 x 2048 x 65536 + 65536 + 2048 parameters each), 2 x 7/8 of them per device at 25 GB/s.
    gradient_gb = 5 * 4 * (2 * 2048 * 65536 + 65536 + 2048) / 1e9
    allreduce_h = 80e6 / (8 * 4096) * gradient_gb * 2 * 7 / 8 / 25 / 3600
    assert data["hours"] == pytest.approx((forward_h + sae_h) / 8 + allreduce_h, rel=1e-3)
    assert 0 < allreduce_h < 0.01 * data["hours"]  # the forward is the cost, not the all-reduce
    assert dealt["hours"] == pytest.approx(forward_h + sae_h / 5, rel=1e-3)  # one layer each, 5 of 8 busy
    assert data["memory_gb"] == one.paths["online"]["memory_gb"] > dealt["memory_gb"]  # every SAE on each
    slow = plan(PlanConfig(clips=160_000, clip_seconds=10, model="musicgen-large", devices=8, costs=costs,
                           allreduce_gb_per_s=2.5))  # fmt: skip
    assert slow.paths["online, data-parallel"]["hours"] - data["hours"] == pytest.approx(9 * allreduce_h)


def test_the_command_says_where_its_figures_come_from(costs: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            str(BIN / "sae-core"),
            "plan",
            "--clips",
            "160000",
            "--model",
            "musicgen-large",
            "--costs",
            str(costs),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "extract then train" in run.stdout and "online" in run.stdout
    assert "1,000 frames/s measured on musicgen-small, scaled by decoder parameters" in run.stdout
    assert "measured 2026-12-01 on Test GPU" in run.stdout
    on_eight = subprocess.run(
        [str(BIN / "sae-core"), "plan", "--clips", "160000", "--model", "musicgen-large", "--devices", "8",
         "--allreduce-gbps", "100", "--costs", str(costs)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert on_eight.returncode == 0, on_eight.stderr
    assert "online, data-parallel" in on_eight.stdout and "online, layers dealt" in on_eight.stdout
    assert "at an assumed 100 GB/s" in on_eight.stdout
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"machine": "x"}))
    bad = subprocess.run(
        [str(BIN / "sae-core"), "plan", "--clips", "10", "--costs", str(broken)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad.returncode != 0 and "broken.json: field 'measured' is missing" in bad.stderr


def test_the_shipped_costs_were_measured_by_the_benchmark() -> None:
    shipped = json.loads(COSTS.read_text())
    assert shipped["script"] == "benchmarks/bench_costs.py"
    assert shipped["forward"]["frames_per_s"] > 0 and shipped["sae"]["tokens_per_s"] > 0
    assert plan(PlanConfig(clips=10, clip_seconds=10)).paths["online"]["hours"] > 0
