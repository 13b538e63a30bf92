"""Validate any artifact file by recognising its kind from its name."""

from __future__ import annotations

from pathlib import Path

from artifact_schemas.errors import ArtifactError
from artifact_schemas.jsonfiles import load_key, load_study
from artifact_schemas.provenance import load_run_record
from artifact_schemas.tables import TABLES, load_table

# File name -> table schema name, per DESIGN.md's artifact contracts.
_TABLE_FILES = {
    "metadata.csv": "corpus_metadata",
    "concepts.csv": "corpus_concepts",
    "index.parquet": "activation_index",
    "features.parquet": "features",
    "examples.parquet": "examples",
    "labels.parquet": "labels",
    "steering.parquet": "steering",
    "responses.csv": "responses",
    "responses.parquet": "responses",
}
KNOWN_FILES = ("study.json", "key.json", "run.json", *_TABLE_FILES)


def validate_artifact(path: str | Path) -> str:
    """Validate ``path`` against the schema its file name implies; return a one-line summary.

    Raises :class:`ArtifactError` when the file breaks its schema or its kind is unknown.
    """
    path = Path(path)
    name = path.name
    if name == "study.json":
        study = load_study(path)
        return f"study '{study.study_id}': {len(study.trials)} trials, {len(study.lists)} lists"
    if name == "key.json":
        sibling = path.with_name("study.json")
        key = load_key(path, load_study(sibling) if sibling.is_file() else None)
        return f"answer key of '{key.study_id}': {len(key.trials)} trials"
    if name == "run.json":
        run = load_run_record(path)
        return f"run record of stage '{run.stage}' started {run.started_at:%Y-%m-%d %H:%M}"
    if name in _TABLE_FILES:
        schema = TABLES[_TABLE_FILES[name]]
        df = load_table(path, schema)
        return f"{schema.name} table (v{schema.version}): {len(df)} rows"
    raise ArtifactError(path, None, f"one of the artifact file names {list(KNOWN_FILES)}", name)
