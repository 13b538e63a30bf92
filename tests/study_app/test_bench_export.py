"""benchmarks/bench_export.py runs end to end (smoke: seconds, not a measurement).

The benchmark builds SQLite study databases (the example study imported through
``study-app init-db`` and ``import``, responses bulk-inserted into the app's tables) and
times ``study-app export --format parquet`` in a fresh process. Its bulk insert writes the
app's tables by hand, so a schema change breaks it without any other test noticing. Here
``--smoke`` (2,000 rows) must print its last line with every response exported and peak
memory finite and positive; the numbers themselves mean nothing.
"""

from __future__ import annotations

import math

import pytest

from tests.bench_smoke import run_benchmark


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_export_smoke_exports_every_row() -> None:
    stdout, fields = run_benchmark("bench_export.py", "--smoke")
    assert tuple(fields) == ("rows", "rows_per_s", "peak_mb", "mem_ratio"), stdout
    for value in fields.values():
        assert math.isfinite(float(value)) and float(value) > 0, stdout
    # whole sessions of the example study's main trials, up to the 2,000 asked for
    assert 1_000 <= int(fields["rows"]) <= 2_000, stdout
