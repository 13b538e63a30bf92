"""benchmarks/bench_sae_train.py runs end to end (smoke: seconds, not a measurement).

The benchmark trains our TopK SAE and its peers (sparsify, SAELens, dictionary_learning),
each with its own loop and defaults, on the same planted-dictionary batches. Its peers live
in ``.venv-bench`` (``make bench-env``), not in the project's environment, so ``--smoke``
runs our side alone when sparsify is absent and prints the peer's fields as ``n/a``; where
sparsify is installed its loop runs too. Here the last line must carry every field, ours
finite (FVU and recovery in their ranges), the peer's finite or ``n/a``, and each trainer
its held-out FVU over training. The numbers themselves mean nothing.
"""

from __future__ import annotations

import math

import pytest

from tests.bench_smoke import run_benchmark

FIELDS = ("time_to_fvu_ratio", "recovery_ours", "recovery_sparsify", "fvu_ours", "fvu_sparsify")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_sae_train_smoke_prints_every_field() -> None:
    stdout, fields = run_benchmark("bench_sae_train.py", "--smoke", "--threads", "1")
    assert tuple(fields) == FIELDS, stdout
    for name, value in fields.items():
        if value == "n/a" and (name.endswith("sparsify") or name == "time_to_fvu_ratio"):
            continue  # sparsify not installed here: our side ran alone
        assert math.isfinite(float(value)) and float(value) >= 0, stdout
    # a step that did nothing would leave the FVU at 1 or above, a broken decoder past it
    assert 0 < float(fields["fvu_ours"]) < 1.5, stdout
    assert 0 < float(fields["recovery_ours"]) <= 1, stdout
    assert "ours " in stdout and "tokens/s" in stdout, stdout
    assert "fvu by training second:" in stdout, stdout
