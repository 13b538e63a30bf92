"""study.json and key.json: validation on read, atomic canonical writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from artifact_schemas import (
    AnswerKey,
    ArtifactError,
    Clip,
    CompletionCodes,
    Option,
    StudyManifest,
    Trial,
    TrialKey,
    TrialList,
    load_key,
    load_study,
    manifest_sha256,
    save_key,
    save_study,
)


def make_manifest() -> StudyManifest:
    clip = Clip(file="audio/a1b2c3.flac", sha256="0" * 64, duration_s=4.0)
    trial = Trial(
        id="t1",
        kind="label_choice",
        question="Which label describes these clips best?",
        references=["a1b2c3"],
        options=[Option(id="o1", text="piano"), Option(id="o2", text="drums")],
    )
    return StudyManifest(
        study_id="demo",
        title="Demo",
        clips={"a1b2c3": clip},
        trials=[trial],
        lists=[TrialList(id="L1", trials=["t1"])],
    )


def make_key(manifest: StudyManifest) -> AnswerKey:
    return AnswerKey(
        study_id=manifest.study_id,
        manifest_sha256=manifest_sha256(manifest),
        codes=CompletionCodes(complete="C1", screened_out="C2", declined="C3"),
        trials={"t1": TrialKey(correct_option="o1", feature_id=7, layer=2, labeler="descriptors")},
    )


def test_round_trip_is_canonical(tmp_path: Path) -> None:
    manifest = make_manifest()
    save_study(manifest, tmp_path / "study.json")
    first = (tmp_path / "study.json").read_bytes()
    assert load_study(tmp_path / "study.json") == manifest
    save_study(load_study(tmp_path / "study.json"), tmp_path / "study.json")
    assert (tmp_path / "study.json").read_bytes() == first


def test_wrong_type_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    save_study(make_manifest(), path)
    data = json.loads(path.read_text())
    data["trials"][0]["options"][1]["text"] = 42
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as err:
        load_study(path)
    message = str(err.value)
    assert str(path) in message
    assert "trials[0].options[1].text" in message
    assert "42" in message and "string" in message


def test_unknown_field_is_rejected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    save_study(make_manifest(), path)
    data = json.loads(path.read_text())
    data["trials"][0]["correct_option"] = "o1"  # an answer must never sit in study.json
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"trials\[0\]\.correct_option.*no such field"):
        load_study(path)


def test_dangling_clip_reference_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    save_study(make_manifest(), path)
    data = json.loads(path.read_text())
    data["trials"][0]["references"] = ["nope"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="unknown clips"):
        load_study(path)


def test_newer_schema_version_asks_for_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    save_study(make_manifest(), path)
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="newer release"):
        load_study(path)


def test_invalid_json_names_file(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    path.write_text('{"study_id": ')
    with pytest.raises(ArtifactError, match=r"study\.json.*valid JSON"):
        load_study(path)


def test_key_must_belong_to_its_manifest(tmp_path: Path) -> None:
    manifest = make_manifest()
    key = make_key(manifest)
    save_key(key, tmp_path / "key.json")
    assert load_key(tmp_path / "key.json", manifest) == key
    other = manifest.model_copy(update={"study_id": "other"})
    with pytest.raises(ArtifactError, match="study_id"):
        load_key(tmp_path / "key.json", other)


def test_public_manifest_cannot_carry_answers() -> None:
    # The blinding contract: no field of study.json can hold key information.
    schema = StudyManifest.model_json_schema()
    fields = set(schema["properties"])
    for definition in schema["$defs"].values():
        fields |= set(definition.get("properties", {}))
    assert "options" in fields and "candidates" in fields
    for field in fields:
        for secret in (
            "correct",
            "feature",
            "layer",
            "labeler",
            "clap",
            "strength",
            "steer",
            "baseline",
            "answer",
        ):
            assert secret not in field
