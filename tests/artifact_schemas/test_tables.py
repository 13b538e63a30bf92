"""Tabular artifacts: validated on read and write, versioned, written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from artifact_schemas import FEATURES, LABELS, RESPONSES, ArtifactError, load_table, save_table


def features_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature_id": [0, 1, 2],
            "layer": [3, 3, 3],
            "frequency": [0.0, 0.02, 0.4],
            "max_activation": [0.0, 5.5, 2.0],
            "n_tracks": [0, 12, 1],
            "kept": [False, True, False],
            "filter_reason": ["dead", None, "single-track"],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_keeps_values_and_types(tmp_path: Path, suffix: str) -> None:
    path = save_table(features_frame(), tmp_path / f"features{suffix}", FEATURES)
    back = load_table(path, FEATURES)
    pd.testing.assert_frame_equal(back, FEATURES.validate(features_frame()))
    assert back["kept"].dtype == bool
    assert back.loc[1, "filter_reason"] is None


def test_parquet_records_artifact_and_version(tmp_path: Path) -> None:
    path = save_table(features_frame(), tmp_path / "features.parquet", FEATURES)
    meta = pq.read_schema(path).metadata
    assert meta[b"artifact"] == b"features"
    assert meta[b"schema_version"] == b"1"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("frequency", 1.5, "<= 1"),
        ("feature_id", -1, ">= 0"),
        ("feature_id", 1.5, "an integer"),
        ("n_tracks", "many", "a number"),
        ("kept", "maybe", "true or false"),
    ],
)
def test_bad_value_names_file_column_row_and_value(
    tmp_path: Path, column: str, value: object, expected: str
) -> None:
    df = features_frame().astype(object)
    df.loc[2, column] = value
    path = tmp_path / "features.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ArtifactError) as err:
        load_table(path, FEATURES)
    message = str(err.value)
    assert str(path) in message
    assert f"{column}[row 2]" in message
    assert str(value) in message
    assert expected in message


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"feature_id": [1], "layer": [0], "label": ["piano"]}).to_parquet(path)
    with pytest.raises(ArtifactError, match=r"labels\.parquet: field 'labeler'.*expected a column"):
        load_table(path, LABELS)


def test_wrong_artifact_kind_is_rejected(tmp_path: Path) -> None:
    path = save_table(features_frame(), tmp_path / "features.parquet", FEATURES)
    with pytest.raises(ArtifactError, match="'labels' table"):
        load_table(path, LABELS)


def test_newer_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    table = pa.Table.from_pandas(features_frame())
    pq.write_table(table.replace_schema_metadata({b"artifact": b"features", b"schema_version": b"7"}), path)
    with pytest.raises(ArtifactError, match="newer release"):
        load_table(path, FEATURES)


def test_duplicate_key_is_rejected(tmp_path: Path) -> None:
    df = pd.concat([features_frame(), features_frame().iloc[[1]]])
    with pytest.raises(ArtifactError, match=r"layer,feature_id.*appear once"):
        save_table(df, tmp_path / "features.parquet", FEATURES)


def test_failed_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    path = save_table(features_frame(), tmp_path / "features.parquet", FEATURES)
    before = path.read_bytes()
    bad = features_frame()
    bad.loc[0, "frequency"] = 2.0
    with pytest.raises(ArtifactError):
        save_table(bad, path, FEATURES)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["features.parquet"]


def test_extra_columns_are_kept(tmp_path: Path) -> None:
    df = features_frame().assign(mean_activation=[0.0, 1.0, 0.5])
    back = load_table(save_table(df, tmp_path / "features.parquet", FEATURES), FEATURES)
    assert back["mean_activation"].tolist() == [0.0, 1.0, 0.5]


def test_response_export_rejects_unknown_trial_type(tmp_path: Path) -> None:
    row = {c.name: None for c in RESPONSES.columns}
    row.update(
        schema_version=1,
        study_id="s",
        session_id="x",
        participant="p",
        list_id="L1",
        trial_id="t1",
        trial_type="guess",
        phase="main",
        position=0,
        rt_ms=900.0,
        server_ts="2026-11-24T10:00:00Z",
    )
    with pytest.raises(ArtifactError, match=r"trial_type\[row 0\].*'guess'.*label_choice"):
        save_table(pd.DataFrame([row]), tmp_path / "responses.csv", RESPONSES)


def _one_response_row() -> pd.DataFrame:
    """One valid export row: every required column given a value its column accepts."""
    fill = {"str": "x", "int": 1, "float": 1.0, "bool": False}
    row = {
        c.name: None if c.nullable or c.optional else (c.choices[0] if c.choices else fill[c.dtype])
        for c in RESPONSES.columns
    }
    row.update(trial_type="label_choice", phase="main", play_counts="{}", server_ts="2026-11-24T10:00:00Z")
    return pd.DataFrame([row])


def test_response_export_of_version_1_reads_with_the_renamed_column(tmp_path: Path) -> None:
    """Version 2 renamed trial_kind to trial_type; a version-1 export still loads."""
    from artifact_schemas import RESPONSES, load_table

    current = _one_response_row()
    old = current.rename(columns={"trial_type": "trial_kind"}).assign(schema_version=1)
    old.to_csv(tmp_path / "v1.csv", index=False)
    loaded = load_table(tmp_path / "v1.csv", RESPONSES)
    assert "trial_kind" not in loaded.columns
    assert loaded["trial_type"].tolist() == ["label_choice"]
    assert RESPONSES.version == 2
