"""sae-core extract: sharded, indexed by frame, resumable, identical under torchrun."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from artifact_schemas import ACTIVATION_INDEX, load_run_record, load_table

BIN = Path(sys.executable).parent


def _extract(
    model: Path,
    corpus: Path,
    out: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    launcher: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        *(launcher or [str(BIN / "sae-core")]),
        "extract",
        "--model",
        str(model),
        "--corpus",
        str(corpus),
        "--layers",
        "1,3",
        "--out",
        str(out),
        "--tracks-per-shard",
        "2",
        "--threads",
        "1",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)


def _layer_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("layer_*/*")) if p.is_file()}


@pytest.fixture(scope="module")
def extracted(tiny_model_dir: Path, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "acts"
    result = _extract(tiny_model_dir, small_corpus, out, "--window-seconds", "2")
    assert result.returncode == 0, result.stderr
    return out


def test_rows_are_indexed_by_track_frame_and_time(extracted: Path, small_corpus: Path) -> None:
    meta = json.loads((extracted / "layer_3" / "meta.json").read_text())
    assert meta["d_model"] == 64 and meta["rows"] == 6 * 150  # 6 tracks x 3 s x 50 frames/s
    index = load_table(extracted / "layer_3" / "index.parquet", ACTIVATION_INDEX)
    assert index["row"].tolist() == list(range(len(index)))
    per_track = index.groupby("track_id")["frame"].apply(list)
    # Windows of 2 s (100 frames) + 1 s: frames continue across the window boundary.
    assert all(frames == list(range(150)) for frames in per_track)
    assert np.allclose(index["time_s"], index["frame"] / 50)
    rows = sum(
        load_file(str(extracted / "layer_3" / s["file"]))["activations"].shape[0] for s in meta["shards"]
    )
    assert rows == len(index)
    record = load_run_record(extracted / "run.json")
    assert record.stage == "extract" and record.parents[0]["stage"] == "synth-corpus"


def test_windows_match_a_direct_forward(extracted: Path, tiny_model_dir: Path, small_corpus: Path) -> None:
    import soundfile as sf
    import torch

    from sae_core.models import load_model

    model = load_model(str(tiny_model_dir))
    # The extraction ran with --threads 1; another thread count may round differently,
    # flip a near-tie in the codec's nearest-codebook search, and change every later row.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    audio = torch.from_numpy(sf.read(small_corpus / "track_0000.flac", dtype="float32")[0][None, :64000])
    try:
        direct = model.residuals(model.encode_audio(audio), [1])[1][0]  # the first 2 s window
    finally:
        torch.set_num_threads(threads)
    stored = load_file(str(extracted / "layer_1" / "shard_00000.safetensors"))["activations"][:100]
    np.testing.assert_allclose(stored.astype(np.float32), direct.numpy(), rtol=2e-3, atol=2e-3)


def test_corrupt_audio_is_skipped_and_named(tiny_model_dir: Path, small_corpus: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus)
    (corpus / "track_0003.flac").write_bytes(b"not audio at all")
    out = tmp_path / "acts"
    result = _extract(tiny_model_dir, corpus, out)
    assert result.returncode == 0, result.stderr
    assert "track_0003.flac" in result.stderr and "corrupt" in result.stderr
    index = pd.read_parquet(out / "layer_1" / "index.parquet")
    assert set(index["track_id"]) == {f"track_{i:04d}" for i in (0, 1, 2, 4, 5)}


def test_bad_arguments_exit_with_one_clear_line(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    result = _extract(tiny_model_dir, small_corpus, tmp_path / "a", "--text-condition", "lyrics")
    assert result.returncode == 2 and "--text-condition" in result.stderr
    bad_layer = subprocess.run(
        [
            str(BIN / "sae-core"),
            "extract",
            "--model",
            str(tiny_model_dir),
            "--corpus",
            str(small_corpus),
            "--layers",
            "7",
            "--out",
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert bad_layer.returncode == 2 and "layer 7 does not exist" in bad_layer.stderr


@pytest.mark.timeout(1200)  # two extractions, generous for a loaded machine
def test_interrupted_extraction_resumes_without_recomputing(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(small_corpus, corpus)
    for i in range(6, 18):  # more tracks, so that the run is still going when interrupted
        shutil.copy(corpus / f"track_{i % 6:04d}.flac", corpus / f"track_{i:04d}.flac")
    meta = pd.read_csv(corpus / "metadata.csv")
    extra = meta.iloc[[i % 6 for i in range(6, 18)]].assign(
        track_id=[f"track_{i:04d}" for i in range(6, 18)],
        path=[f"track_{i:04d}.flac" for i in range(6, 18)],
    )
    pd.concat([meta, extra]).to_csv(corpus / "metadata.csv", index=False)
    out = tmp_path / "acts"
    cmd = [
        str(BIN / "sae-core"),
        "extract",
        "--model",
        str(tiny_model_dir),
        "--corpus",
        str(corpus),
        "--layers",
        "1,3",
        "--out",
        str(out),
        "--tracks-per-shard",
        "1",
        "--threads",
        "1",
    ]
    # The interruption lands at a known shard, however busy the machine: track 9 is a named
    # pipe, so extraction stops on opening it (a pipe's open waits for a writer) after
    # shards 0-8. Racing a signal against a fast run failed when a loaded machine starved
    # the test while the run finished (issue 15).
    fifo = corpus / "track_0009.flac"
    real = fifo.read_bytes()
    fifo.unlink()
    os.mkfifo(fifo)
    # Ctrl-C as at a terminal. A CI job started in the background by a shell (`cmd &`, no job
    # control) inherits SIGINT *ignored*, and Python then installs no KeyboardInterrupt
    # handler: the run skipped the pipe and finished (rc 0), or, before the writer below,
    # hung on it. The three "loaded machine" failures of issue 15 were this, not load.
    # A default disposition survives exec, so a small launcher resets it and execs the run
    # (preexec_fn would do it between fork and exec, which Python warns is unsafe in a
    # process with threads, as pytest's can be).
    launcher = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 900
    while len(list((out / "progress").glob("*.json"))) < 9 and proc.poll() is None:
        assert time.monotonic() < deadline, "extraction did not reach track 9"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    # A process-directed signal may be taken by another thread, and then the main thread's
    # blocking open is not interrupted: a writer that opens and closes at once lets the open
    # return, the read find nothing, and Python raise the pending KeyboardInterrupt.
    while proc.poll() is None:
        assert time.monotonic() < deadline, "extraction did not stop after SIGINT"
        with contextlib.suppress(OSError):  # ENXIO: nobody is opening the pipe (yet)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "progress").glob("*.json")}
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    assert len(done_before) == 9, "the interruption must land mid-run, at the pipe"
    assert not (out / "run.json").exists()
    kept = {
        name: (out / "layer_1" / name.replace(".json", ".safetensors")).stat().st_mtime_ns
        for name in done_before
    }
    fifo.unlink()
    fifo.write_bytes(real)

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{18 - len(done_before)} shards computed, {len(done_before)} reused" in resumed.stdout
    for name, mtime in kept.items():
        assert (out / "layer_1" / name.replace(".json", ".safetensors")).stat().st_mtime_ns == mtime
    assert len(pd.read_parquet(out / "layer_1" / "index.parquet")) == 18 * 150


def test_resume_refuses_other_settings(extracted: Path, tiny_model_dir: Path, small_corpus: Path) -> None:
    result = _extract(tiny_model_dir, small_corpus, extracted, "--window-seconds", "1")
    assert result.returncode == 2
    assert "other settings" in result.stderr


@pytest.mark.slow
def test_torchrun_two_ranks_gives_identical_files(
    extracted: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "acts"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "sae_core"]
    result = _extract(tiny_model_dir, small_corpus, out, "--window-seconds", "2", env=env, launcher=launcher)
    assert result.returncode == 0, result.stderr
    assert _layer_files(out) == _layer_files(extracted)


def test_paper_layers_preset(tiny_model_dir: Path, small_corpus: Path, tmp_path: Path) -> None:
    from sae_core.layers import paper_layers

    assert paper_layers(24) == [2, 6, 12, 18, 22]  # musicgen-small
    assert paper_layers(48) == [2, 12, 24, 36, 46]  # medium / large
    cmd = [
        str(BIN / "sae-core"),
        "extract",
        "--model",
        str(tiny_model_dir),
        "--corpus",
        str(small_corpus),
        "--layers",
        "paper",
        "--out",
        str(tmp_path / "acts"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "acts").glob("layer_*")) == ["layer_1", "layer_2", "layer_3"]


def test_a_machine_without_avx512_writes_the_same_activations(
    extracted: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """sae_core.numerics pins the CPU kernels to AVX2, so SAEs, labels and studies built from
    these files agree across machines. The run below sees what a processor without AVX-512
    offers (ATen, MKL and oneDNN limited to AVX2); on an AVX-512 machine without the pin
    (``SAE_CORE_NATIVE_CPU=1``) the default run wrote other bytes than this one."""
    env = {
        **os.environ,
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
    }
    out = tmp_path / "acts"
    result = _extract(tiny_model_dir, small_corpus, out, "--window-seconds", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert _layer_files(out) == _layer_files(extracted)


def _rows(out: Path, layer: int) -> np.ndarray:
    meta = json.loads((out / f"layer_{layer}" / "meta.json").read_text())
    return np.concatenate(
        [load_file(str(out / f"layer_{layer}" / s["file"]))["activations"] for s in meta["shards"]]
    )


def test_keep_fraction_stores_a_quarter_of_the_frames_at_their_times(
    extracted: Path, tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    """Issue 22.2a: --keep-fraction 0.25 takes <= 0.27x the disk, and every kept row is the
    full extraction's row of the same track and frame, so later stages cut the right clips."""
    out = tmp_path / "acts"
    result = _extract(tiny_model_dir, small_corpus, out, "--window-seconds", "2", "--keep-fraction", "0.25")
    assert result.returncode == 0, result.stderr

    def disk(root: Path) -> int:
        return sum(p.stat().st_size for p in root.glob("layer_*/shard_*.safetensors"))

    assert disk(out) <= 0.27 * disk(extracted)
    meta = json.loads((out / "layer_3" / "meta.json").read_text())
    assert (meta["keep_fraction"], meta["keep_seed"]) == (0.25, 0)
    full_index = load_table(extracted / "layer_3" / "index.parquet", ACTIVATION_INDEX)
    kept_index = load_table(out / "layer_3" / "index.parquet", ACTIVATION_INDEX)
    assert len(kept_index) == meta["rows"] == 6 * (25 + 12)  # a quarter of each 100- and 50-frame window
    assert np.allclose(kept_index["time_s"], kept_index["frame"] / 50)
    where = full_index.set_index(["track_id", "frame"])["row"]
    full_rows = where.loc[list(zip(kept_index["track_id"], kept_index["frame"], strict=True))].to_numpy()
    for layer in (1, 3):
        np.testing.assert_array_equal(_rows(out, layer), _rows(extracted, layer)[full_rows])
    # The same frames at any batching: they are drawn per (seed, track, window start).
    again = _extract(
        tiny_model_dir, small_corpus, tmp_path / "again", "--window-seconds", "2",
        "--keep-fraction", "0.25", "--batch-seconds", "2", "--tracks-per-shard", "1",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    again_index = load_table(tmp_path / "again" / "layer_3" / "index.parquet", ACTIVATION_INDEX)
    assert again_index[["track_id", "frame"]].equals(kept_index[["track_id", "frame"]])
    bad = _extract(tiny_model_dir, small_corpus, tmp_path / "bad", "--keep-fraction", "0")
    assert bad.returncode == 2 and "--keep-fraction must be in (0, 1]" in bad.stderr


def test_bf16_forward_extracts_rows_close_to_fp32_and_records_it(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    from sae_core.activations.extract import ExtractConfig, extract
    from sae_core.models import load_model

    model, runs = load_model(str(tiny_model_dir)), {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        cfg = ExtractConfig(model=str(tiny_model_dir), layers=[3], dtype="float32", bf16_forward=bf16)
        assert extract(model, cfg, small_corpus, tmp_path / name, progress=False).finished
        shards = sorted((tmp_path / name / "layer_3").glob("shard_*"))
        runs[name] = np.concatenate([load_file(p)["activations"] for p in shards])
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert fp32.shape == bf16.shape and not np.array_equal(fp32, bf16)  # autocast did run
    assert np.corrcoef(fp32.ravel(), bf16.ravel())[0, 1] > 0.99
    settings = json.loads((tmp_path / "bf16" / "extract.json").read_text())["config"]
    assert settings["bf16_forward"] is True


def test_paper_is_resolved_into_a_copy_of_the_config(
    tiny_model_dir: Path, small_corpus: Path, tmp_path: Path
) -> None:
    # 'paper' needs the model's depth: extract_activations resolves it into the run it
    # records, and the config the caller holds (and may run again) still says paper.
    from artifact_schemas import FieldError
    from sae_core.activations.extract import ExtractConfig, extract_activations
    from sae_core.layers import check_layers

    cfg = ExtractConfig(
        str(tiny_model_dir), "paper", window_seconds=2.0, corpus=small_corpus, out=tmp_path / "a"
    )
    result = extract_activations(cfg, progress=False)
    assert result.layers == [1, 2, 3] and cfg.layers == "paper"
    assert json.loads((tmp_path / "a" / "run.json").read_text())["config"]["layers"] == [1, 2, 3]
    assert check_layers([3, 1, 3]) == [1, 3]
    for bad in ([], [-1], "all"):
        with pytest.raises(FieldError, match="layers"):
            check_layers(bad)  # type: ignore[arg-type]
