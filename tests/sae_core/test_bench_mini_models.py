"""benchmarks/bench_mini_models.py runs end to end (smoke: every part, not a measurement).

The benchmark is what says whether the mini models have learned music (issue 32); here it
runs in ``--smoke`` mode on models built in seconds: a spectral codec fitted on a tiny
synthetic corpus, a MusicGen trained a few steps on it, the output of ``sae-core steer``
on that MusicGen with a random SAE, and the random tiny CLAP. Its last line must carry
the four numbers, each in its possible range; the numbers themselves mean nothing.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_mini_models_runs_every_part(tmp_path: Path) -> None:
    from sae_core.clap import build_tiny_clap
    from sae_core.mini.musicgen import MusicgenTrainConfig, train_musicgen
    from sae_core.mini.spectral import CodecFitConfig, fit_codec
    from sae_core.sae import SaeConfig, SparseCoder
    from sae_core.steering.generate import SteerConfig, run_steering
    from sae_core.synth import synth_corpus

    synth_corpus(tmp_path / "corpus", n_tracks=6, seconds=3, seed=6, sr=16000)
    fit_codec(
        CodecFitConfig(
            corpus=tmp_path / "corpus",
            out=tmp_path / "codec",
            pca_dims=16,
            codebooks=2,
            codebook_size=32,
            kmeans_iters=5,
            max_fit_frames=400,
            griffin_lim_iters=4,
            threads=1,
        )
    )
    mg = MusicgenTrainConfig(
        corpus=tmp_path / "corpus",
        codec=tmp_path / "codec",
        out=tmp_path / "musicgen",
        layers=2,
        hidden_size=32,
        ffn_dim=64,
        text_hidden_size=16,
        crop_frames=50,
        steps=8,
        batch_size=2,
        lr=3e-3,
        checkpoint_every=0,
        progress=False,
        threads=1,
    )
    train_musicgen(mg)
    # A random SAE on layer 1 is enough to write steer's layout: steered, baseline, control.
    SparseCoder(SaeConfig(d_in=32, num_latents=16, k=4, layer=1)).save_to_disk(tmp_path / "sae")
    (tmp_path / "prompts.txt").write_text("Simple melody\n")
    run_steering(
        SteerConfig(
            model=str(mg.out),
            sae=tmp_path / "sae",
            features=[0, 1],
            prompts=tmp_path / "prompts.txt",
            out=tmp_path / "steering",
            strengths=[0.0, 30.0],
            seconds=1.0,
        ),
        progress=False,
    )
    clap = build_tiny_clap(tmp_path / "clap")

    parts = [
        "--codec",
        tmp_path / "codec",
        "--musicgen",
        mg.out,
        "--clap",
        clap,
        "--steering",
        tmp_path / "steering",
    ]
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_mini_models.py"), "--smoke", "--threads", "1"]
        + [str(p) for p in parts],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"codec_concepts=(\d+\.\d{3}) prompt_adherence=(\d+\.\d{3}) clap_zero_shot=(\d+\.\d{3}) "
        r"steer_db=(\d+\.\d{3})",
        last,
    )
    assert match, run.stdout
    codec, adherence, clap_share, steer_db = (float(v) for v in match.groups())
    # agreements <= 1; retention is a ratio of accuracies and may pass 1 by a little
    assert 0 <= codec <= 2
    assert math.isfinite(adherence) and adherence >= 0
    assert 0 <= clap_share <= 1
    assert 0 < steer_db < 120  # a strength-30 direction changes the tokens, so the audio
    # every part printed its table, the peers beside
    for heading in ("codec ", "random tiny preset's codec", "MusicGen ", "shuffled", "CLAP ", "steering "):
        assert heading in run.stdout, run.stdout
    # caption use: the model and the tiny preset, each concept's changed words priced
    use = [line for line in run.stdout.splitlines() if "own caption" in line]
    assert len(use) == 2 and all(
        f"{c} " in line for c in ("mode", "tempo", "instrument", "drums") for line in use
    )
    # strength 0 rows are left out; each steered pair and its random control are measured
    assert "2 steered pairs" in run.stdout and "random control median" in run.stdout, run.stdout
