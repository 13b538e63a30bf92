"""Reading a study_app export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from artifact_schemas import RESPONSES, load_table


def load_responses(path: str | Path) -> pd.DataFrame:
    """Load a responses export (.csv or .parquet), validated against the export schema.

    Raises :class:`artifact_schemas.ArtifactError` naming the file and column on bad input.
    """
    return load_table(path, RESPONSES)


def response_summary(responses: pd.DataFrame) -> pd.DataFrame:
    """Counts per study, phase and trial kind: participants, sessions, responses, accuracy.

    Accuracy is the mean of ``correct`` over responses that have a key (null otherwise).

    >>> df = pd.DataFrame({"study_id": ["s"] * 3, "phase": ["main"] * 3,
    ...     "trial_kind": ["label_choice"] * 3, "participant": ["a", "a", "b"],
    ...     "session_id": ["1", "1", "2"], "correct": [True, False, True]})
    >>> row = response_summary(df).iloc[0]
    >>> int(row.participants), int(row.responses), round(float(row.accuracy), 3)
    (2, 3, 0.667)
    """
    correct = responses["correct"].astype("Float64")
    grouped = responses.assign(_correct=correct).groupby(["study_id", "phase", "trial_kind"], sort=True)
    out = grouped.agg(
        participants=("participant", "nunique"),
        sessions=("session_id", "nunique"),
        responses=("trial_kind", "size"),
        accuracy=("_correct", "mean"),
    )
    out["accuracy"] = out["accuracy"].astype("float64")
    return out.reset_index()
