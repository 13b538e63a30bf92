"""The full analysis report on a 100k-response export, against the time to read the file.

Writes a synthetic export (``analysis.simulate``: 500 participants x 50 features x
4 trial types = 100,000 responses) as Parquet, then times (1) ``pandas.read_parquet``
of it and (2) load + validate + every table, figure and file of ``study-analysis
report`` except the Bayesian mixed model, which is timed on its own (variational
Bayes over 500 participants is the one step whose cost grows with the design, not
the rows; a descriptive table since issue 35.2, so off in ``--quick`` unless
``--bayes``). Goal: the report in < 10 s on 2 cores. ``--smoke`` runs it all on 20
participants in seconds (the test's mode, not a measurement).

Usage: python benchmarks/bench_analysis.py [--quick | --smoke] [--bayes]
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
    parser.add_argument("--smoke", action="store_true", help="20 participants: seconds, not a measurement")
    parser.add_argument("--bayes", action="store_true", help="time the variational-Bayes fit in --quick too")
    args = parser.parse_args()
    repeats = 1 if args.quick or args.smoke else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "responses.parquet"
        df = simulate_export(20 if args.smoke else 500, 10 if args.smoke else 50, seed=0)
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
        bayes, bayes_s = None, 0.0
        if args.bayes or not (args.quick or args.smoke):
            t0 = time.perf_counter()
            bayes = bayes_mixed(designs(df))
            bayes_s = time.perf_counter() - t0
    seconds, read = min(report_times), min(read_times)
    if bayes is None:
        separate = "Bayesian mixed model not timed (--bayes)"
    else:
        converged = not bayes["note"].str.contains("did not converge").any()
        separate = (
            f"Bayesian mixed model {bayes_s:.1f} s (separate{'' if converged else ', did not converge'})"
        )
    print(f"{len(df):,} responses; read {read:.3f} s; report {seconds:.2f} s (goal < 10 s); {separate}")
    print(f"seconds={seconds:.2f} read_ratio={seconds / read:.0f}")


if __name__ == "__main__":
    main()
