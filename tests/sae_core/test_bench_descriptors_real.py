"""benchmarks/bench_descriptors_real.py runs end to end (smoke: seconds, not a measurement).

The benchmark scores the ``descriptors`` labeler (both key finders, tempo, register) on Bach
chorales rendered through FluidSynth. music21 and FluidSynth are optional and offline, and
usually absent; ``--smoke`` then scores two tracks of the project's synthetic corpus
instead, so the scoring, both backends of ``describe_segment`` and the report still run.
Its last line must carry the seven fields: six shares in [0, 1] and a finite ratio. The
numbers themselves mean nothing.
"""

from __future__ import annotations

import math

import pytest

from tests.bench_smoke import run_benchmark

SHARES = ("key_librosa", "key_essentia", "mode_librosa", "mode_essentia", "tempo", "register")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_descriptors_real_smoke_scores_every_descriptor() -> None:
    stdout, fields = run_benchmark("bench_descriptors_real.py", "--smoke")
    assert tuple(fields) == (*SHARES, "essentia_vs_librosa_key"), stdout
    for name in SHARES:
        assert 0 <= float(fields[name]) <= 1, stdout
    assert math.isfinite(float(fields["essentia_vs_librosa_key"])), stdout
    # one row per piece with both backends' keys, then the summary
    assert stdout.count(" librosa ") >= 2 and stdout.count(" essentia ") >= 2, stdout
    assert "2 chorales" in stdout or "2 synthetic pieces" in stdout, stdout
