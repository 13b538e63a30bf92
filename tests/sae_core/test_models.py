"""The transformers MusicGen adapter on the tiny preset, loaded like real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sae_core.models import Intervention, MusicModel, load_model


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> MusicModel:
    return load_model(str(tiny_model_dir))


def _audio(small_corpus: Path, n: int = 2, seconds: float = 2.0) -> torch.Tensor:
    clips = [
        sf.read(small_corpus / f"track_{i:04d}.flac", dtype="float32")[0][: int(seconds * 32000)]
        for i in range(n)
    ]
    return torch.from_numpy(np.stack(clips))


def test_loads_from_disk_with_musicgen_shape(model: MusicModel) -> None:
    assert (model.d_model, model.n_layers, model.num_codebooks) == (64, 4, 4)
    assert (model.sample_rate, model.frame_rate) == (32000, 50.0)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model .*: cannot load a MusicGen checkpoint"):
        load_model(str(tmp_path / "nothing-here"))


def test_real_audio_gives_varied_codes_one_per_frame(model: MusicModel, small_corpus: Path) -> None:
    codes = model.encode_audio(_audio(small_corpus))
    assert codes.shape == (2, 4, 100)
    assert len(torch.unique(codes[:, 0])) > 10  # distinct sounds, distinct codes
    assert not torch.equal(codes[0], codes[1])


@pytest.mark.parametrize("texts", [None, ["a fast piano melody", "slow dark organ"]])
def test_captured_residuals_equal_output_hidden_states(
    model: MusicModel, small_corpus: Path, texts: list[str] | None
) -> None:
    codes = model.encode_audio(_audio(small_corpus))
    layers = list(range(model.n_layers))
    captured = model.residuals(codes, layers, texts)
    ids = model.delayed_input_ids(codes)  # type: ignore[attr-defined]
    with torch.no_grad():
        out = model.model(  # type: ignore[attr-defined]
            decoder_input_ids=ids,
            output_hidden_states=True,
            **model._text_inputs(texts, 2),  # type: ignore[attr-defined]
        )
    hidden = out.decoder_hidden_states  # (embeddings, block 0, ..., final norm(block n-1))
    frames = slice(1, codes.shape[-1] + 1)
    for layer in layers[:-1]:
        torch.testing.assert_close(captured[layer], hidden[layer + 1][:, frames], rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        last = model._decoder.layer_norm(captured[layers[-1]])  # type: ignore[attr-defined]
    torch.testing.assert_close(last, hidden[-1][:, frames], rtol=1e-5, atol=1e-5)


def test_row_f_sees_frame_f_and_not_later_frames(model: MusicModel, small_corpus: Path) -> None:
    codes = model.encode_audio(_audio(small_corpus, n=1))
    base = model.residuals(codes, [2])[2]
    changed = codes.clone()
    changed[:, 0, 50] = (changed[:, 0, 50] + 1) % 256  # frame 50, first codebook
    after = model.residuals(changed, [2])[2]
    diff = (after - base).abs().amax(dim=-1)[0]
    assert torch.all(diff[:50] == 0)  # causal: earlier rows unaffected
    assert diff[50] > 0  # row 50 reads frame 50's first codebook


def test_hooks_are_removed_after_use(model: MusicModel) -> None:
    direction = torch.zeros(model.d_model)
    layers = model.decoder_layers()
    before = [len(layer._forward_hooks) for layer in layers]  # transformers may keep its own
    with model.hooks(capture=[0, 1], interventions=[Intervention(2, direction)]):
        assert [len(layer._forward_hooks) for layer in layers] == [n + (i < 3) for i, n in enumerate(before)]
    assert [len(layer._forward_hooks) for layer in layers] == before


def test_bad_intervention_is_refused(model: MusicModel) -> None:
    with pytest.raises(ValueError, match="layer 9 does not exist"), model.hooks(capture=[9]):
        pass
    bad = [Intervention(0, torch.ones(3))]
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(64,\)"), model.hooks(interventions=bad):
        pass


def test_generation_is_seeded_and_steering_changes_only_with_strength(model: MusicModel) -> None:
    gen = model.generate_codes
    codes, audio = gen(["a fast piano melody"], 1.0, seed=3)
    assert codes.shape == (1, 4, 50)
    assert audio.shape == (1, 50 * 640) and torch.isfinite(audio).all()
    again, _ = gen(["a fast piano melody"], 1.0, seed=3)
    assert torch.equal(codes, again)
    direction = torch.nn.functional.normalize(
        torch.randn(64, generator=torch.Generator().manual_seed(0)), dim=0
    )
    zero, _ = gen(["a fast piano melody"], 1.0, seed=3, interventions=[Intervention(2, 0.0 * direction)])
    assert torch.equal(codes, zero)
    steered, _ = gen(["a fast piano melody"], 1.0, seed=3, interventions=[Intervention(2, 4.0 * direction)])
    assert (steered != codes).float().mean() > 0.2
    cond_only, _ = gen(
        ["a fast piano melody"],
        1.0,
        seed=3,
        interventions=[Intervention(2, 4.0 * direction, "conditional")],
    )
    assert not torch.equal(cond_only, steered)
