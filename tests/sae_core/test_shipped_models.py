"""The weights in mini-models/ (issue 32): they load like real ones, they are what the recipe
in code would train, and the codec keeps what a listener hears of music it never saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sae_core.mini.codec import load_corpus_audio
from sae_core.mini.recipe import PARTS, MiniModelsConfig
from sae_core.models.codec import SpectralCodec, load_codec
from sae_core.synth import synth_corpus

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "mini-models"
SR = 16000


# How a run was executed, not what it trained: left out of the comparison.
RUNNING = {"threads", "progress"}


def _without_running(config: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in config.items() if k not in RUNNING}


def _run_config(part: str) -> dict[str, object]:
    return _without_running(json.loads((SHIPPED / part / "run.json").read_text())["config"])


@pytest.mark.parametrize("part", PARTS)
def test_the_shipped_run_json_matches_the_recipe_in_code(
    part: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change a default in the code and this fails until 'make mini-models' retrains."""
    # The stage configs check that their inputs exist, at the recipe's relative paths: the
    # shipped models, and a training corpus that a clone does not have (it is rendered by
    # 'make mini-models'), so a placeholder metadata.csv stands in for it here.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mini-models").symlink_to(SHIPPED)
    (tmp_path / "build" / "mini-corpus").mkdir(parents=True)
    (tmp_path / "build" / "mini-corpus" / "metadata.csv").write_text("path,caption\n")
    recipe = getattr(MiniModelsConfig(), part)().record()
    assert _run_config(part) == _without_running(recipe)


def test_the_weights_are_safetensors_and_small_enough_to_ship() -> None:
    files = [f for f in SHIPPED.rglob("*") if f.is_file()]
    weights = [f for f in files if f.suffix in (".safetensors", ".pt", ".bin", ".pth", ".ckpt")]
    assert weights and all(f.suffix == ".safetensors" for f in weights), weights
    assert sum(f.stat().st_size for f in files) <= 50 * 2**20


def test_the_musicgen_carries_the_codec_the_benchmark_scores() -> None:
    for name in ("codec.json", "codec.safetensors"):
        assert (SHIPPED / "codec" / name).read_bytes() == (SHIPPED / "musicgen" / "codec" / name).read_bytes()


def test_a_bad_part_names_the_flag() -> None:
    import subprocess
    import sys

    cli = str(Path(sys.executable).parent / "sae-core")
    bad = subprocess.run([cli, "mini-models", "--only", "codec, vocoder"], capture_output=True, text=True)
    assert bad.returncode == 2, bad.stderr
    assert "--only some of codec, musicgen, clap, got codec, vocoder" in bad.stderr, bad.stderr


def test_the_shipped_musicgen_loads_like_real_weights_with_its_codec() -> None:
    from sae_core.models import load_model

    model = load_model(str(SHIPPED / "musicgen"))
    assert isinstance(model.codec, SpectralCodec)  # type: ignore[attr-defined]
    assert (model.sample_rate, model.frame_rate, model.num_codebooks) == (SR, 50, 4)
    codes, audio = model.generate_codes(["A slow flute melody in D minor."], seconds=1.0, seed=0)
    assert codes.shape == (1, 4, 50) and audio.shape == (1, SR) and torch.isfinite(audio).all()


def _chroma(y: np.ndarray) -> np.ndarray:
    import librosa

    return np.asarray(librosa.feature.chroma_cqt(y=y, sr=SR).mean(axis=1))


def test_the_shipped_codec_keeps_each_unseen_melodys_pitch_classes(tmp_path: Path) -> None:
    """Each reconstruction's chroma is nearest its own original's among six held-out tracks.

    The neural mini codec it replaces turned every melody into a 50 Hz comb read as G.
    """
    synth_corpus(tmp_path, n_tracks=6, seconds=3, seed=12, sr=SR)  # seed 1 is the fitting corpus
    codec = load_codec(SHIPPED / "codec")
    tracks, meta = load_corpus_audio(tmp_path, SR)
    recon = codec.decode(codec.encode(torch.from_numpy(np.stack(tracks)))).numpy()
    assert recon.shape == (6, 3 * SR)
    originals = np.stack([_chroma(y) for y in tracks])
    rebuilt = np.stack([_chroma(y) for y in recon])
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    cosine = unit(rebuilt) @ unit(originals).T  # [reconstruction, original]
    assert list(cosine.argmax(axis=1)) == list(range(6)), (list(meta["key"]), cosine.round(2))


def test_the_shipped_clap_loads_like_real_weights_and_hears_as_its_run_json_says() -> None:
    from sae_core.clap import ClapScorer

    scorer = ClapScorer.load(str(SHIPPED / "clap"))  # the code path of real checkpoints
    config = _run_config("clap")
    extractor = scorer.feature_extractor
    heard = {
        "sample_rate": extractor.sampling_rate,
        "fft_window_size": extractor.fft_window_size,
        "hop_length": extractor.hop_length,
        "num_mel_bins": extractor.feature_size,
        "frequency_min": extractor.frequency_min,
        "frequency_max": extractor.frequency_max,
        "spec_size": scorer.model.config.audio_config.spec_size,
        "patch_size": scorer.model.config.audio_config.patch_size,
    }
    assert heard == {k: config[k] for k in heard}
    assert scorer.sample_rate == config["sample_rate"]  # clips are resampled to the extractor's rate


def _instrument_ranks(clap_dir: Path, clips: Path) -> np.ndarray:
    """Per clip, how many instrument prompts ("a flute melody", bench_mini_models' wording)
    are closer to it than its own instrument's (0: its own is the closest)."""
    from sae_core.clap import ClapScorer

    meta = pd.read_csv(clips / "metadata.csv")
    values = sorted(set(meta["instrument"]))
    sims = ClapScorer.load(str(clap_dir)).similarity(
        [f"a {v} melody" for v in values], [clips / p for p in meta["path"]]
    )  # [prompts, clips]
    truth = np.asarray([values.index(v) for v in meta["instrument"]])
    return np.asarray((sims > sims[truth, np.arange(len(truth))]).sum(axis=0))


def test_the_shipped_clap_names_the_instrument_of_unseen_clips_and_the_random_one_does_not(
    tmp_path: Path,
) -> None:
    """Zero-shot on 24 clips of a seed no model saw, the trained CLAP against the random preset.

    Measured when shipped: the true prompt's mean rank among the 6 was 1.04 (random
    preset 2.50, chance 2.5) and it was first for 11 of 24 clips (random preset 4).
    Mode is not asserted: the shipped CLAP does not hear it yet (docs/models.md).
    """
    from sae_core.clap import build_tiny_clap

    synth_corpus(tmp_path / "clips", n_tracks=24, seconds=10, seed=12, sr=SR)
    trained = _instrument_ranks(SHIPPED / "clap", tmp_path / "clips")
    random = _instrument_ranks(build_tiny_clap(tmp_path / "tiny", seed=0), tmp_path / "clips")
    assert trained.mean() <= 1.6 and trained.mean() + 1.0 <= random.mean(), (trained, random)
    assert np.mean(trained == 0) >= np.mean(random == 0) + 0.15, (trained, random)
