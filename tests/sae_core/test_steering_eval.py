"""sae-core steering-eval: CLAP says whether steered audio moved towards the feature."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from artifact_schemas import EXAMPLES, LABELS, STEERING, save_table
from sae_core.clap import ClapScorer, build_tiny_clap
from sae_core.steering.clap_eval import evaluate_steering

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("models") / "tiny-clap")


def _run(tmp_path: Path, small_corpus: Path) -> Path:
    """Feature 5's examples are track 0; its 'steered' clip is track 0 too, the baseline track 1."""
    run = tmp_path / "run"
    features = run / "features" / "layer_3"
    (features / "clips").mkdir(parents=True)
    rows = []
    for rank in (1, 2, 3):
        shutil.copy(small_corpus / "track_0000.flac", features / "clips" / f"e{rank}.flac")
        rows.append(
            {
                "feature_id": 5,
                "layer": 3,
                "rank": rank,
                "track_id": "track_0000",
                "start_s": 0.0,
                "end_s": 3.0,
                "peak_time_s": 1.0,
                "peak_activation": 2.0,
                "path": f"clips/e{rank}.flac",
            }
        )
    save_table(pd.DataFrame(rows), features / "examples.parquet", EXAMPLES)
    steering = run / "steering"
    steering.mkdir()
    shutil.copy(small_corpus / "track_0000.flac", steering / "steered.flac")
    shutil.copy(small_corpus / "track_0001.flac", steering / "baseline.flac")
    shutil.copy(small_corpus / "track_0002.flac", steering / "random.flac")
    pairs = pd.DataFrame(
        [
            {
                "feature_id": 5,
                "layer": 3,
                "prompt": "Simple melody",
                "seed": 0,
                "strength": 1.0,
                "path": "steered.flac",
                "baseline_path": "baseline.flac",
                "random_path": "random.flac",
            }
        ]
    )
    save_table(pairs, steering / "steering.parquet", STEERING)
    labels = pd.DataFrame(
        {
            "feature_id": [5, 5],
            "layer": 3,
            "labeler": "clap-vocab",
            "label": ["piano", "drums"],
            "confidence": 0.5,
            "clap_score": [0.3, 0.1],
        }
    )
    save_table(labels, run / "labels.parquet", LABELS)
    return run


def test_steered_copy_of_the_examples_counts_as_improved(
    tmp_path: Path, small_corpus: Path, clap_dir: Path
) -> None:
    run = _run(tmp_path, small_corpus)
    scorer = ClapScorer.load(str(clap_dir))
    table, summary = evaluate_steering(run, scorer)
    row = table.iloc[0]
    assert row["audio_sim_steered"] == pytest.approx(1.0, abs=1e-5)
    assert row["audio_sim_baseline"] < row["audio_sim_steered"]
    assert row["label"] == "piano"  # the feature's best-scored label
    text = scorer.embed_text(["piano"])[0]
    steered = scorer.embed_audio([run / "steering" / "steered.flac"])[0]
    assert row["text_sim_steered"] == pytest.approx(float(steered @ text), abs=1e-6)
    assert summary.to_dict("records")[0]["audio_improved"] == 1.0
    assert summary.to_dict("records")[0]["beats_random"] == 1.0


def test_cli_writes_the_table(tmp_path: Path, small_corpus: Path, clap_dir: Path) -> None:
    run = _run(tmp_path, small_corpus)
    result = subprocess.run(
        [str(BIN / "sae-core"), "steering-eval", str(run), "--clap", str(clap_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "audio_improved" in result.stdout
    assert len(pd.read_parquet(run / "steering" / "steering_eval.parquet")) == 1
