"""Power planning with the exact binomial test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


def test_plan_sizes_a_study_of_your_own_clips_for_the_tests_its_report_runs(tmp_path: Path) -> None:
    """Issue 36: `plan` refused studies of your own clips. It now sizes MUSHRA, slider and
    ABX trials per condition (Holm over the conditions), and the assessors it asks for give
    the wanted power when the report's test is simulated on them: a paired t test of the
    condition's difference (MUSHRA), a one-sided t test of participants' proportions
    correct against 1/2 (ABX), each simulated 4,000 times."""
    from stimuli_builder.conditions import load_conditions
    from stimuli_builder.config import load_config
    from stimuli_builder.example import write_example_stimuli
    from stimuli_builder.plan import PowerTargets, plan_own

    config_path = write_example_stimuli(tmp_path / "own")
    result = CliRunner().invoke(app, ["plan", str(config_path), "--slider-d", "0.8", "--abx-correct", "0.7"])
    assert result.exit_code == 0, result.output
    for kind in ("mushra", "slider", "abx"):
        assert kind in result.output
    assert "conditions" in result.output and "3 items" in result.output
    assert "participants per list needed:" in result.output

    cfg, _ = load_config(config_path)
    stimuli = load_conditions(config_path.parent / cfg.stimuli.conditions, reserved=cfg.mushra.anchors)
    targets = PowerTargets(slider_d=0.6, abx_correct=0.7, abx_sd=0.1)
    rows = {r.kind: r for r in plan_own(cfg, stimuli, targets)}
    rng = np.random.default_rng(1)

    def simulated_power(n: int, m: int, draw: Any, alternative: str) -> float:
        samples = draw(n, 4000)
        p = stats.ttest_1samp(
            samples, 0.5 if alternative == "greater" else 0.0, axis=0, alternative=alternative
        )
        return float(np.mean(p.pvalue < 0.05 / m))

    # MUSHRA: thin, noisy, coarse and the generated lp3500 against the hidden reference.
    mushra = rows["mushra"]
    assert mushra.features == 4 and mushra.chance is None
    n = mushra.responses_per_feature // len(stimuli.items)  # assessors (each rates every item)
    assert mushra.participants_total >= n

    def paired(k: int, sims: int) -> Any:  # each assessor's mean difference, d_z = 0.6
        return rng.normal(0.6, 1.0, size=(k, sims))

    assert simulated_power(n, 4, paired, "two-sided") >= 0.77
    assert simulated_power(n - 3, 4, paired, "two-sided") < 0.8  # not wildly more than needed

    # ABX: noisy and coarse; each participant answers 3 items x 1 repeat per condition.
    abx = rows["abx"]
    assert abx.features == 2 and abx.chance == 0.5 and abx.effect == 0.7
    n_abx = abx.responses_per_feature // 3

    def proportions(k: int, sims: int) -> Any:
        p = np.clip(rng.normal(0.7, 0.1, size=(k, sims)), 0, 1)
        return rng.binomial(3, p) / 3

    assert simulated_power(n_abx, 2, proportions, "greater") >= 0.77
    assert simulated_power(max(n_abx - 6, 2), 2, proportions, "greater") < 0.8

    # Slider lists that each rate a third of the clips need three times the assessors.
    third = config_path.read_text().replace(
        'labels = ["Not at all", "Extremely"]', 'labels = ["Not at all", "Extremely"]\nper_list = 2'
    )
    config_path.write_text(third)
    cfg3, _ = load_config(config_path)
    slider3 = next(r for r in plan_own(cfg3, stimuli, targets) if r.kind == "slider")
    assert slider3.participants_total >= 3 * rows["slider"].participants_total - 3 * cfg.lists.count
