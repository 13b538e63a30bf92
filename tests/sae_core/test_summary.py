"""sae-core summarize: the three figures and the Markdown table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from PIL import Image

from artifact_schemas import FEATURES, LABELS, save_table

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


def test_summarize_writes_figures_and_table(tmp_path: Path) -> None:
    run = _run(tmp_path)
    result = subprocess.run(
        [str(BIN / "sae-core"), "summarize", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = run / "summary"
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
