"""The full analysis report on a 100k-response export, against the time to read the file.

Writes a synthetic export (``analysis.simulate``: 500 participants x 50 features x
4 trial types = 100,000 responses) as Parquet, then times (1) ``pandas.read_parquet``
of it and (2) load + validate + every table, figure and file of ``study-analysis
report`` except the Bayesian mixed model, which is timed on its own (variational
Bayes over 500 participants is the one step whose cost grows with the design, not
the rows). Goal: the report in < 10 s on 2 cores.

Usage: python benchmarks/bench_analysis.py [--quick]
The last line is ``seconds=<x> read_ratio=<y>`` (report seconds / read seconds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis.models import bayes_mixed, designs
from analysis.report import build_report, write_report
from analysis.responses import load_responses
from analysis.simulate import simulate_export
from artifact_schemas import RESPONSES, save_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing run instead of the best of three")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "responses.parquet"
        df = simulate_export(500, 50, seed=0)
        save_table(df, path, RESPONSES)
        read_times, report_times = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            pd.read_parquet(path)
            read_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            report = build_report(load_responses(path), title="benchmark", bayes=False)
            write_report(report, Path(tmp) / "report")
            report_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bayes = bayes_mixed(designs(df))
        bayes_s = time.perf_counter() - t0
    converged = not bayes["note"].str.contains("did not converge").any()
    seconds, read = min(report_times), min(read_times)
    print(
        f"{len(df):,} responses; read {read:.3f} s; report {seconds:.2f} s (goal < 10 s); "
        f"Bayesian mixed model {bayes_s:.1f} s (separate{'' if converged else ', did not converge'})"
    )
    print(f"seconds={seconds:.2f} read_ratio={seconds / read:.0f}")


if __name__ == "__main__":
    main()
