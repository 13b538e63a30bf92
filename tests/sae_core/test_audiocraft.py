"""The audiocraft adapter, on a tiny audiocraft MusicGen saved as audiocraft checkpoints.

Runs where the optional audiocraft stack is installed (see docs/models.md); skipped
elsewhere with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("audiocraft", reason="the optional audiocraft stack is not installed (docs/models.md)")

from sae_core.models import Intervention, MusicModel, load_model

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "tiny-audiocraft"
    cmd = [str(BIN / "sae-core"), "tiny-model", "--backend", "audiocraft", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> MusicModel:
    return load_model(str(tiny_dir), backend="audiocraft")


def test_loads_through_audiocraft_checkpoints(model: MusicModel, tiny_dir: Path) -> None:
    assert {p.name for p in tiny_dir.iterdir()} == {"state_dict.bin", "compression_state_dict.bin"}
    assert (model.d_model, model.n_layers, model.num_codebooks, model.frame_rate) == (64, 4, 4, 50.0)


def test_rows_are_frames_and_causal(model: MusicModel, small_corpus: Path) -> None:
    import soundfile as sf

    audio = torch.from_numpy(sf.read(small_corpus / "track_0000.flac", dtype="float32")[0][None, :64000])
    codes = model.encode_audio(audio)
    assert codes.shape == (1, 4, 100)
    base = model.residuals(codes, [1, 3], ["a fast piano melody"])
    assert base[3].shape == (1, 100, 64)
    changed = codes.clone()
    changed[:, 0, 50] = (changed[:, 0, 50] + 1) % 256
    after = model.residuals(changed, [1], ["a fast piano melody"])[1]
    diff = (after - base[1]).abs().amax(dim=-1)[0]
    assert torch.all(diff[:50] == 0) and diff[50] > 0


def test_generation_seeded_and_steerable(model: MusicModel) -> None:
    gen = model.generate_codes
    codes, audio = gen(["a fast piano melody"], 1.0, seed=3)
    assert codes.shape == (1, 4, 50) and audio.shape[-1] == 32000
    assert torch.equal(codes, gen(["a fast piano melody"], 1.0, seed=3)[0])
    direction = torch.nn.functional.normalize(
        torch.randn(64, generator=torch.Generator().manual_seed(0)), dim=0
    )
    steered, _ = gen(["a fast piano melody"], 1.0, seed=3, interventions=[Intervention(2, 4.0 * direction)])
    assert (steered != codes).float().mean() > 0.2


def test_extract_cli_with_audiocraft_backend(tiny_dir: Path, small_corpus: Path, tmp_path: Path) -> None:
    cmd = [
        str(BIN / "sae-core"),
        "extract",
        "--backend",
        "audiocraft",
        "--model",
        str(tiny_dir),
        "--corpus",
        str(small_corpus),
        "--layers",
        "2",
        "--out",
        str(tmp_path / "acts"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "extracted 900 frames" in result.stdout
