"""The published MusicGen architectures, random weights, on CPU (issue 22.1; ``-k real_config``).

What a researcher with real weights would otherwise find out first: that the shapes, the
layer indices of ``--layers paper``, the capture positions, the T5-base-shaped text
encoder and steering all work at 24 and 48 blocks. Small goes through save_pretrained and
the same ``load_model`` as real weights; medium is built in memory (6 GB in fp32); large
only on the meta device (shapes, no memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from sae_core.layers import paper_layers
from sae_core.models import Intervention, load_model
from sae_core.models.transformers_musicgen import TransformersMusicGen
from sae_core.presets.musicgen import t5_word_tokenizer
from sae_core.presets.real import build_real_musicgen


def _clip(small_corpus: Path, seconds: float) -> torch.Tensor:
    audio = sf.read(small_corpus / "track_0002.flac", dtype="float32")[0][: int(seconds * 32000)]
    return torch.from_numpy(np.ascontiguousarray(audio))[None]


def _captures_equal_hidden_states(
    model: Any, codes: torch.Tensor, layers: list[int], texts: list[str]
) -> None:
    captured = model.residuals(codes, layers, texts)
    with torch.no_grad():
        out = model.model(
            decoder_input_ids=model.delayed_input_ids(codes),
            output_hidden_states=True,
            **model._text_inputs(texts, codes.shape[0]),
        )
    frames = slice(1, codes.shape[-1] + 1)
    for layer in layers:  # hidden_states[l + 1] is block l's output (the last is normed)
        if layer < model.n_layers - 1:
            torch.testing.assert_close(
                captured[layer], out.decoder_hidden_states[layer + 1][:, frames], rtol=1e-4, atol=1e-4
            )


def test_real_config_small_loads_extracts_and_steers_like_real_weights(
    small_corpus: Path, tmp_path: Path
) -> None:
    built = build_real_musicgen("musicgen-small")
    built.save_pretrained(tmp_path / "small")
    t5_word_tokenizer().save_pretrained(tmp_path / "small")
    del built
    model = load_model(str(tmp_path / "small"))
    assert (model.d_model, model.n_layers, model.num_codebooks) == (1024, 24, 4)
    assert (model.sample_rate, model.frame_rate) == (32000, 50.0)
    assert paper_layers(model.n_layers) == [2, 6, 12, 18, 22]
    codes = model.encode_audio(_clip(small_corpus, 2.0))
    assert codes.shape == (1, 4, 100) and int(codes.max()) < 2048
    _captures_equal_hidden_states(model, codes, paper_layers(24), ["a slow piano melody in a minor key"])

    # Steering one second at block 12 moves block 12 by exactly the vector, leaves block 6
    # alone and changes block 18 (downstream only).
    one_second = codes[..., :50]
    vector = torch.nn.functional.normalize(
        torch.randn(1024, generator=torch.Generator().manual_seed(1)), dim=0
    )
    plain = model.residuals(one_second, [6, 12, 18])
    with model.hooks(interventions=[Intervention(12, 8.0 * vector)]):
        steered = model.residuals(one_second, [6, 12, 18])
    torch.testing.assert_close(steered[6], plain[6], rtol=0, atol=0)
    torch.testing.assert_close(
        steered[12] - plain[12], (8.0 * vector).expand_as(plain[12]), rtol=0, atol=1e-4
    )
    assert float((steered[18] - plain[18]).abs().max()) > 1e-3


def test_real_config_medium_resolves_48_blocks_and_captures_at_the_paper_layers(small_corpus: Path) -> None:
    model = TransformersMusicGen(
        build_real_musicgen("musicgen-medium"), t5_word_tokenizer(), "musicgen-medium"
    )
    assert (model.d_model, model.n_layers, model.num_codebooks) == (1536, 48, 4)
    layers = paper_layers(model.n_layers)
    assert layers == [2, 12, 24, 36, 46]
    codes = model.encode_audio(_clip(small_corpus, 1.0))
    assert codes.shape == (1, 4, 50)
    _captures_equal_hidden_states(model, codes, [2, 46], ["fast drums"])


def test_real_config_large_has_the_published_shape_on_the_meta_device() -> None:
    built = build_real_musicgen("musicgen-large", device="meta")
    decoder = built.decoder.model.decoder
    assert len(decoder.layers) == 48 and built.config.decoder.hidden_size == 2048
    assert decoder.layers[0].self_attn.num_heads == 32
    assert 3.2e9 < sum(p.numel() for p in built.decoder.parameters()) < 3.3e9  # "3.3B"
    assert paper_layers(48) == [2, 12, 24, 36, 46]


def test_real_config_stereo_and_melody_are_refused_in_one_line(tmp_path: Path) -> None:
    stereo = build_real_musicgen("musicgen-stereo-small", device="meta")
    assert (stereo.config.decoder.num_codebooks, stereo.config.decoder.audio_channels) == (8, 2)
    with pytest.raises(ValueError, match=r"stereo MusicGen .* not supported; use the mono checkpoint"):
        TransformersMusicGen(stereo, t5_word_tokenizer(), "musicgen-stereo-small")
    from transformers import MusicgenMelodyConfig

    MusicgenMelodyConfig().save_pretrained(tmp_path / "melody")
    with pytest.raises(ValueError, match=r"'musicgen_melody' checkpoint, not MusicGen; musicgen-melody"):
        load_model(str(tmp_path / "melody"))
