"""run.json: enough to reproduce a stage's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact_schemas import checksum_path, load_run_record, recorded_run


def test_recorded_run_writes_inputs_seeds_versions_and_parents(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.wav").write_bytes(b"abc")
    with recorded_run(corpus, "synth-corpus", config={"tracks": 1}, seeds={"seed": 1}):
        pass
    out = tmp_path / "acts"
    with recorded_run(
        out,
        "extract",
        config={"layers": [1, 2]},
        seeds={"seed": 3},
        inputs=[corpus],
        command=["sae-core", "extract"],
    ):
        (out / "x.npy").parent.mkdir(parents=True, exist_ok=True)
    record = load_run_record(out / "run.json")
    assert record.command == ["sae-core", "extract"]
    assert record.seeds == {"seed": 3}
    assert record.config == {"layers": [1, 2]}
    assert record.inputs[0].path == str(corpus) and record.inputs[0].files == 1
    assert record.parents[0]["stage"] == "synth-corpus"
    assert "numpy" in record.packages
    assert record.finished_at is not None and record.finished_at >= record.started_at


def test_failed_stage_writes_no_run_record(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), recorded_run(tmp_path, "features"):
        raise RuntimeError("boom")
    assert not (tmp_path / "run.json").exists()


def test_directory_checksum_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"1")
    (tmp_path / "b.bin").write_bytes(b"2")
    first = checksum_path(tmp_path).sha256
    (tmp_path / "sub" / "a.bin").write_bytes(b"3")
    assert checksum_path(tmp_path).sha256 != first
