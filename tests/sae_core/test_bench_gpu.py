"""benchmarks/bench_gpu.py runs end to end on the CPU (smoke: seconds, not a measurement).

The benchmark is written for a lent GPU, which CI does not have, so the test runs
``--smoke --device cpu``: the forward of the tiny MusicGen preset with the paper's layers
captured, in fp32 and under bf16 autocast, and our SAE step (sparsify's too where it is
installed) at two small shapes. Everything runs except what only a GPU has: CUDA
synchronisation, peak GPU memory (``nan`` on a CPU) and sparsify's Triton decoder. The
last line must carry both ratio fields (finite, or ``n/a`` without sparsify) and the bf16
forward rate, finite and positive. The numbers themselves mean nothing.
"""

from __future__ import annotations

import math

import pytest

from tests.bench_smoke import run_benchmark


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_gpu_smoke_runs_on_the_cpu() -> None:
    stdout, fields = run_benchmark("bench_gpu.py", "--smoke", "--device", "cpu")
    assert tuple(fields) == ("ratio_vs_sparsify_d1024", "ratio_vs_sparsify_d2048", "forward_fps_bf16"), stdout
    for name, value in fields.items():
        if value == "n/a" and name.startswith("ratio_vs_sparsify"):
            continue  # sparsify not installed here
        assert math.isfinite(float(value)) and float(value) > 0, stdout
    # both precisions of the forward and our step at both shapes were measured
    assert "fp32:" in stdout and "bf16:" in stdout, stdout
    assert stdout.count("  ours ") == 2, stdout
