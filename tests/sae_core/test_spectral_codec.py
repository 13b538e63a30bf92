"""The fitted spectral codec (issue 32): its files, its determinism, its errors.

Small on purpose (a short corpus, small codebooks): a codec fitted on 16 short tracks
does not generalise. What the shipped codec keeps of music it never saw is checked in
test_shipped_models.py and measured by benchmarks/bench_mini_models.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from artifact_schemas import FieldError
from sae_core.cli import app
from sae_core.mini.codec import load_corpus_audio
from sae_core.mini.spectral import CodecFitConfig, fit_codec
from sae_core.models.codec import load_codec
from sae_core.synth import synth_corpus

CLI = str(Path(sys.executable).parent / "sae-core")
SR = 16000


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spectral")
    synth_corpus(root / "fit", n_tracks=16, seconds=3, seed=11, sr=SR)
    synth_corpus(root / "held", n_tracks=4, seconds=3, seed=12, sr=SR)  # never fitted on
    return {"fit": root / "fit", "held": root / "held", "root": root}


def _fit(corpus: Path, out: Path, **changes: object) -> CodecFitConfig:
    # One thread: scikit-learn's k-means adds per-thread sums in arrival order.
    small = {"pca_dims": 48, "codebook_size": 64, "kmeans_iters": 10, "threads": 1}
    cfg = CodecFitConfig(corpus=corpus, out=out, **{**small, **changes})  # type: ignore[arg-type]
    fit_codec(cfg)
    return cfg


@pytest.fixture(scope="module")
def codec_dir(corpora: dict[str, Path]) -> Path:
    _fit(corpora["fit"], corpora["root"] / "codec")
    return corpora["root"] / "codec"


def test_codes_survive_save_and_load_and_a_fit_repeats_for_its_seed(
    codec_dir: Path, corpora: dict[str, Path], tmp_path: Path
) -> None:
    codec = load_codec(codec_dir)
    tracks, _ = load_corpus_audio(corpora["held"], SR)
    audio = torch.from_numpy(tracks[0])[None]
    codes = codec.encode(audio)  # 3 s at 50 frames/s, EnCodec's frame count and shape
    assert codes.shape == (1, 4, 150) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 64
    assert codec.decode(codes).shape == (1, 3 * SR)
    # A clip shorter than half an FFT window still encodes (one frame), as EnCodec's would.
    assert codec.encode(torch.zeros(1, 100)).shape == (1, 4, 1)
    again = _fit(corpora["fit"], tmp_path / "again")
    other = _fit(corpora["fit"], tmp_path / "other", seed=2)
    assert (tmp_path / "again" / "codec.safetensors").read_bytes() == (
        codec_dir / "codec.safetensors"
    ).read_bytes()
    assert torch.equal(load_codec(again.out).encode(audio), codec.encode(audio))
    assert not torch.equal(load_codec(other.out).encode(audio), codec.encode(audio))
    # The same codes always decode to the same audio (Griffin-Lim starts from a fixed phase).
    codes = codec.encode(audio)
    assert torch.equal(codec.decode(codes), codec.decode(codes))
    run = json.loads((codec_dir / "run.json").read_text())
    assert run["stage"] == "fit-codec" and run["config"]["codebook_size"] == 64
    facts = json.loads((codec_dir / "codec.json").read_text())["facts"]
    assert 0.5 < facts["explained_variance"] <= 1 and len(facts["codebook_usage"]) == 4


def test_bad_codes_and_bad_files_name_what_is_wrong(codec_dir: Path, tmp_path: Path) -> None:
    codec = load_codec(codec_dir)
    with pytest.raises(FieldError, match=r"token values must lie in 0\.\.63"):
        codec.decode(torch.full((1, 4, 5), 64))
    with pytest.raises(FieldError, match=r"expected \[batch, 4, frames\]"):
        codec.decode(torch.zeros((1, 3, 5), dtype=torch.long))
    for audio, message in (
        (torch.zeros(2, 16000), None),
        (torch.zeros(1, 2, 16000), r"expected mono \[batch, samples\], got shape \(1, 2, 16000\)"),
        (torch.zeros(1, 16000, dtype=torch.int16), "expected float samples"),
        (torch.tensor([[0.0, float("nan")] * 800]), "NaN or infinite"),
    ):
        if message is None:
            assert codec.encode(audio).shape == (2, 4, 50)
            assert codec.decode(codec.encode(audio)[..., :0]).shape == (2, 0)
            continue
        with pytest.raises(FieldError, match=message):
            codec.encode(audio)
    with pytest.raises(FieldError, match="no codec there"):
        load_codec(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "codec.json").write_text(json.dumps({"kind": "wavelet"}))
    with pytest.raises(FieldError, match="unknown codec kind 'wavelet'"):
        load_codec(broken)
    (broken / "codec.json").write_text((codec_dir / "codec.json").read_text())
    with pytest.raises(FieldError, match="cannot read the codec's weights"):
        load_codec(broken)
    good = json.loads((codec_dir / "codec.json").read_text())
    (broken / "codec.safetensors").write_bytes((codec_dir / "codec.safetensors").read_bytes())
    for change, message in (
        ({"n_fft": "1024"}, "n_fft must be a int, got '1024'"),
        ({"log_floor": None}, "log_floor must be a float, got None"),
        ({"codebook_size": 32}, r"codebooks shape \(4, 64, 48\) does not match"),
    ):
        (broken / "codec.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(FieldError, match=message) as caught:
            load_codec(broken)
        assert str(broken) in str(caught.value)


def test_the_command_fits_prints_usage_and_names_bad_flags(corpora: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "codec"
    base = [CLI, "fit-codec", "--corpus", str(corpora["fit"]), "--threads", "1"]
    done = subprocess.run(
        [*base, "--out", str(out), "--pca-dims", "16", "--codebook-size", "16", "--kmeans-iters", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "codebook use" in done.stdout and (out / "codec.json").is_file()
    # The refusals run in this process through the same command (a subprocess each cost
    # torch's import again: this test took 62 s on a busy machine).
    base = base[1:]
    for extra, message in (
        (["--codebook-size", "0"], "--codebook-size must be >= 1"),
        (["--hop-length", "333"], "--hop-length must divide sample_rate"),
        (["--pca-dims", "600"], "--pca-dims at most n_fft // 2 + 1 = 513"),
        (["--max-fit-frames", "10"], "--max-fit-frames must be >= codebook_size"),
    ):
        bad = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "x"), *extra])
        assert bad.exit_code == 2 and message in bad.stderr, (extra, bad.stderr)
        assert bad.exception is None or isinstance(bad.exception, SystemExit)  # no traceback
        assert not (tmp_path / "x" / "codec.json").exists()
    missing = CliRunner().invoke(
        app, ["fit-codec", "--corpus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]
    )
    assert missing.exit_code == 2 and "--corpus no metadata.csv" in missing.stderr
    # A corpus too short for the codebooks is refused before anything is written.
    tiny = tmp_path / "tiny"
    synth_corpus(tiny, n_tracks=1, seconds=1, seed=3, sr=SR)
    short = CliRunner().invoke(
        app,
        ["fit-codec", "--corpus", str(tiny), "--out", str(tmp_path / "z"), "--max-fit-frames", "2000",
         "--codebook-size", "1024"],
    )  # fmt: skip
    assert short.exit_code == 2 and "fewer than codebook_size" in short.stderr, short.stderr
    assert not (tmp_path / "z" / "codec.json").exists()
