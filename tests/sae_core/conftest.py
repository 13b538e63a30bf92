"""Shared model-side fixtures: a tiny MusicGen saved to disk and a small corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifact_schemas import recorded_run
from sae_core.synth import synth_corpus


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset, built and saved with save_pretrained once per test session."""
    from sae_core.presets.tiny import build_tiny_musicgen

    return build_tiny_musicgen(tmp_path_factory.mktemp("models") / "tiny-musicgen", seed=0)


def _synth_corpus(tmp_path_factory: pytest.TempPathFactory, n_tracks: int) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    with recorded_run(out, "synth-corpus", seeds={"seed": 2}):
        synth_corpus(out, n_tracks=n_tracks, seconds=3, seed=2)
    return out


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synth_corpus(tmp_path_factory, 6)


@pytest.fixture(scope="session")
def ten_track_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten tracks of 3 s: at holdout 0.3, 8 train and 2 held out (by their ids' stable hash),
    an even share of each for two ranks."""
    return _synth_corpus(tmp_path_factory, 10)


@pytest.fixture(scope="session")
def extracted_small(
    tiny_model_dir: Path, small_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Activations of the small corpus at layers 1 and 3 (in-process, through the library)."""
    from sae_core.activations.extract import ExtractConfig, extract
    from sae_core.models import load_model

    out = tmp_path_factory.mktemp("run") / "acts"
    cfg = ExtractConfig(model=str(tiny_model_dir), layers=[1, 3], tracks_per_shard=2)
    result = extract(load_model(str(tiny_model_dir)), cfg, small_corpus, out, progress=False)
    assert result.finished
    return out
