"""Reading a study_app export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from artifact_schemas import RESPONSES, ArtifactError, load_table, write_text_atomic


def load_responses(path: str | Path) -> pd.DataFrame:
    """Load a responses export (.csv or .parquet), validated against the export schema.

    Raises :class:`artifact_schemas.ArtifactError` naming the file and column on bad input.
    """
    return load_table(path, RESPONSES)


def options_offered(rows: pd.DataFrame) -> pd.Series:
    """Each row's ``n_options`` as floats, NaN where the export does not say (an export
    from before that column, or a trial without options)."""
    if "n_options" not in rows:
        return pd.Series(float("nan"), index=rows.index)
    return pd.to_numeric(rows["n_options"], errors="coerce").astype(float)  # Int64 <NA> -> NaN


def load_from_database(database_url: str, study: str) -> pd.DataFrame:
    """The export of ``study`` read straight from the study app's database (no file in between).

    Same rows and columns as ``study-app export`` (docs/export.md). Imports the app
    (Flask, SQLAlchemy), not torch.
    """
    # The study app (Flask, SQLAlchemy) only for a database, not for every export read.
    from study_app import create_app
    from study_app.db import db
    from study_app.export import iter_export_batches
    from study_app.models import Study

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        row = db.session.scalar(db.select(Study).where(Study.slug == study))
        if row is None:
            raise ArtifactError(database_url, "study", "an imported study id", study)
        rows = [r for batch in iter_export_batches(row) for r in batch]
        db.engine.dispose()
    return RESPONSES.validate(
        pd.DataFrame(rows, columns=RESPONSES.column_names), source=f"{study} in {database_url}"
    )


def save_summary(table: pd.DataFrame, out: str | Path) -> None:
    """The summary table as CSV, written atomically."""

    write_text_atomic(out, table.to_csv(index=False))


def response_summary(responses: pd.DataFrame) -> pd.DataFrame:
    """Counts per study, phase and trial kind: participants, sessions, responses, accuracy.

    Accuracy is the mean of ``correct`` over responses that have a key (null otherwise).

    >>> df = pd.DataFrame({"study_id": ["s"] * 3, "phase": ["main"] * 3,
    ...     "trial_type": ["label_choice"] * 3, "participant": ["a", "a", "b"],
    ...     "session_id": ["1", "1", "2"], "correct": [True, False, True]})
    >>> row = response_summary(df).iloc[0]
    >>> int(row.participants), int(row.responses), round(float(row.accuracy), 3)
    (2, 3, 0.667)
    """
    correct = responses["correct"].astype("Float64")
    grouped = responses.assign(_correct=correct).groupby(["study_id", "phase", "trial_type"], sort=True)
    out = grouped.agg(
        participants=("participant", "nunique"),
        sessions=("session_id", "nunique"),
        responses=("trial_type", "size"),
        accuracy=("_correct", "mean"),
    )
    out["accuracy"] = out["accuracy"].astype("float64")
    return out.reset_index()
