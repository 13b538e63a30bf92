"""sae-core summarize: the three figures and the Markdown table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from artifact_schemas import CONCEPTS, FEATURES, LABELS, STEERING_TRUTH, save_table

BIN = Path(sys.executable).parent


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    for layer in (1, 3):
        table = pd.DataFrame(
            {
                "feature_id": range(10),
                "layer": layer,
                "frequency": [0.0] + [0.02 * i for i in range(1, 10)],
                "max_activation": 1.0,
                "n_tracks": 3,
                "kept": [False] + [True] * 9,
                "filter_reason": ["dead"] + [None] * 9,
            }
        )
        save_table(table, run / "features" / f"layer_{layer}" / "features.parquet", FEATURES)
    labels = pd.DataFrame(
        {
            "feature_id": [1, 1, 2, 3],
            "layer": [1, 1, 3, 3],
            "labeler": ["descriptors", "clap-vocab", "descriptors", "clap-vocab"],
            "label": ["fast tempo", "drums", "minor key", "piano"],
            "confidence": 0.8,
            "clap_score": [0.2, 0.4, 0.1, 0.3],
        }
    )
    save_table(labels, run / "labels.parquet", LABELS)
    return run


def _summarize(run: Path) -> Path:
    """``sae-core summarize RUN``: its output folder, after checking that it succeeded."""
    result = subprocess.run(
        [str(BIN / "sae-core"), "summarize", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return run / "summary"


def test_summarize_writes_figures_and_table(tmp_path: Path) -> None:
    run = _run(tmp_path)
    out = _summarize(run)
    for name in ("clap_by_layer", "clap_coverage", "feature_frequency"):
        with Image.open(out / f"{name}.png") as img:
            assert img.width > 300 and img.height > 200
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    table = (out / "summary.md").read_text()
    assert "| 1 | 10 | 9 | 0.300 | clap-vocab: 1, descriptors: 1 |" in table
    assert "| 3 | 10 | 9 | 0.200 | clap-vocab: 1, descriptors: 1 |" in table


def test_summarize_without_features_is_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "sae-core"), "summarize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "features/layer_<l>/features.parquet" in result.stderr


def test_summarize_shows_concepts_and_steering_against_the_truth(tmp_path: Path) -> None:
    """Issue 33: where the run was scored against the truth, the summary shows AUROC and
    purity per value and layer (table and figure) and the steering strength-response."""
    run = _run(tmp_path)
    rows = [
        {
            "layer": layer,
            "concept": "mode",
            "value": "minor",
            "method": method,
            "unit": 2,
            "sign": 1.0,
            "auroc": 0.51 if method == "sae" else 0.7,
            "auroc_select": 0.5,
            "threshold": 0.1,
            "precision": 0.9,
            "recall": 0.02,
            "n_positive": 50,
            "n_frames": 100,
            "onset_error_ms": np.nan,
            "n_onsets": 0,
            "window_auroc": 0.97,
            "purity_unit": 5,
            "purity_sign": 1.0,
            "purity": 1.0 if method == "sae" else 0.6,
            "purity_unit_auroc": 0.51,
            "purity_chance": 0.5,
            "purity_onset_error_ms": np.nan,
            "n_windows": 200,
        }
        for layer in (1, 3)
        for method in ("sae", "neuron", "pca")
    ]
    save_table(pd.DataFrame(rows), run / "concepts" / "concepts.parquet", CONCEPTS)
    steering = pd.DataFrame(
        {
            "layer": 3,
            "feature_id": 5,
            "concept": "mode",
            "value": "minor",
            "strength": [1.0, 4.0],
            "n": 8,
            "read_steered": [0.4, 0.9],
            "read_baseline": 0.1,
            "read_control": 0.15,
            "chose_steered": [0.4, 0.8],
            "chose_baseline": 0.1,
            "chose_control": 0.1,
            "flatness_ratio": 1.05,
            "reader_accuracy": 0.9,
        }
    )
    save_table(steering, run / "steering_truth" / "steering_truth.parquet", STEERING_TRUTH)
    out = _summarize(run)
    for name in ("concepts_by_layer", "steering_response"):
        with Image.open(out / f"{name}.png") as img:
            assert img.width > 300 and img.height > 200
    table = (out / "summary.md").read_text()
    assert "| mode=minor | 0.51 / 1.00 (#2, #5; neuron 0.70 / 0.60) |" in table
    assert "(concepts_by_layer.png)" in table and "(steering_response.png)" in table


def test_summarize_without_truth_draws_no_truth_figures(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _summarize(run)
    assert not (run / "summary" / "concepts_by_layer.png").exists()
    assert "Steering against" not in (run / "summary" / "summary.md").read_text()
