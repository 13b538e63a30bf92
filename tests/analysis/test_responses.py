"""Reading an export and the first summary table."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import analysis.responses
from analysis import load_responses, response_summary
from artifact_schemas import RESPONSES, ArtifactError, save_table

CLI = str(Path(sys.executable).parent / "study-analysis")


def export_frame() -> pd.DataFrame:
    rows = []
    for session, participant, answers in (
        ("s1", "p1", [True, False, True]),
        ("s2", "p2", [True, True, None]),
    ):
        for i, correct in enumerate(answers):
            rating = 4.0 if correct is None else None
            rows.append(
                {
                    "schema_version": 1,
                    "study_id": "demo",
                    "session_id": session,
                    "participant": participant,
                    "list_id": "L1",
                    "trial_id": f"t{i}",
                    "trial_type": "label_rating" if correct is None else "label_choice",
                    "phase": "main",
                    "position": i,
                    "answer": None if correct is None else "o1",
                    "rating": rating,
                    "correct": correct,
                    "rt_ms": 1500.0 + i,
                    "server_ts": "2026-11-24T10:00:00Z",
                    "feature_id": i,
                    "layer": 1,
                    "labeler": "descriptors",
                    "clap_score": 0.3,
                    "strength": None,
                    # session columns of the export, the same for every row here
                    "prolific_pid": None,
                    "attempt": 0,
                    "answer_text": None if correct is None else "bright",
                    "answer_role": None,
                    "confidence": None,
                    "correct_option": None if correct is None else "o1",
                    "correct_text": None if correct is None else "bright",
                    "play_counts": "{}",
                    "client_ts": None,
                    "label": "bright",
                    "prompt": None,
                    "seed": None,
                    "check": None,
                    "session_status": "completed",
                    "screening_passed": True,
                    "attention_correct": 1.0,
                    "session_started": "2026-11-24T09:50:00Z",
                    "session_finished": "2026-11-24T10:05:00Z",
                    "duration_s": 900.0,
                    "user_agent": "test",
                    "screen": "800x600",
                }
            )
    return pd.DataFrame(rows)


def test_docstring_example_holds() -> None:
    assert doctest.testmod(analysis.responses).failed == 0


def test_summary_counts_and_accuracy(tmp_path: Path) -> None:
    path = save_table(export_frame(), tmp_path / "responses.parquet", RESPONSES)
    table = response_summary(load_responses(path)).set_index("trial_type")
    assert table.loc["label_choice", "participants"] == 2
    assert table.loc["label_choice", "responses"] == 5
    assert table.loc["label_choice", "accuracy"] == pytest.approx(4 / 5)
    assert pd.isna(table.loc["label_rating", "accuracy"])


def test_cli_summary_writes_csv(tmp_path: Path) -> None:
    path = save_table(export_frame(), tmp_path / "responses.csv", RESPONSES)
    out = tmp_path / "summary.csv"
    result = subprocess.run(
        [CLI, "summary", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "label_choice" in result.stdout
    assert pd.read_csv(out)["responses"].sum() == 6


def test_cli_names_the_bad_column(tmp_path: Path) -> None:
    df = export_frame()
    df.loc[3, "rt_ms"] = -5
    path = tmp_path / "responses.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ArtifactError, match=r"rt_ms\[row 3\]"):
        load_responses(path)
    result = subprocess.run(
        [CLI, "summary", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert "rt_ms[row 3]" in result.stderr
