"""Power planning with the exact binomial test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scipy import stats
from typer.testing import CliRunner

from stimuli_builder.cli import app
from stimuli_builder.plan import binomial_n


def _power(n: int, p0: float, p1: float, alpha: float) -> float:
    c = next(k for k in range(n + 2) if stats.binom.sf(k - 1, n, p0) <= alpha)
    return float(stats.binom.sf(c - 1, n, p1))


def test_binomial_n_is_the_smallest_sufficient_n() -> None:
    for p0, p1, alpha in [(0.5, 0.65, 0.05), (0.25, 0.45, 0.01), (1 / 3, 0.66, 0.05 / 12)]:
        n, achieved = binomial_n(p0, p1, alpha, 0.8)
        assert achieved >= 0.8 and abs(_power(n, p0, p1, alpha) - achieved) < 1e-12
        assert all(_power(m, p0, p1, alpha) < 0.8 for m in range(1, n))


def test_plan_command_prints_participants_per_list(
    example_run: Path, tmp_path: Path, write_config: Any
) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(app, ["plan", str(config), "--bundle", str(example_run), "--effect", "0.7"])
    assert result.exit_code == 0, result.output
    assert "label_choice" in result.output and "steering" in result.output
    assert "participants per list needed:" in result.output
    bad = CliRunner().invoke(app, ["plan", str(config), "--features", "12", "--effect", "0.2"])
    assert bad.exit_code == 1 and "chance" in bad.output
