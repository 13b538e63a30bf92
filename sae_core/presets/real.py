"""The published MusicGen architectures with random weights: test the real shapes without
the real checkpoints (issue 22.1).

The configurations are those of the Hugging Face checkpoints ``facebook/musicgen-small``,
``-medium`` and ``-large`` (decoder width, depth, heads, feed-forward size, 4 codebooks of
2048 codes), with their T5-base text encoder and 32 kHz EnCodec (hop 640, 50 frames/s).
The stereo checkpoints differ in ``audio_channels = 2`` and 8 codebooks (each step holds a
left and a right codebook set, interleaved); this project refuses them with one line
(``TransformersMusicGen``), as it does ``musicgen-melody`` (another model class, with chroma
conditioning). Nothing here downloads anything.
"""

from __future__ import annotations

from typing import Any

import torch

from sae_core.presets.musicgen import musicgen_config, new_musicgen

# name -> (hidden_size, num_hidden_layers, num_attention_heads, ffn_dim)
DECODERS = {
    "musicgen-small": (1024, 24, 16, 4096),
    "musicgen-medium": (1536, 48, 24, 6144),
    "musicgen-large": (2048, 48, 32, 8192),
}
STEREO = {f"musicgen-stereo-{size}": f"musicgen-{size}" for size in ("small", "medium", "large")}
PRESETS = (*DECODERS, *STEREO)
CODEBOOK_SIZE = 2048


def real_musicgen_config(name: str) -> Any:
    """The ``MusicgenConfig`` of a published checkpoint (``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown MusicGen preset {name!r}; expected one of {', '.join(PRESETS)}")
    stereo = name in STEREO
    hidden, layers, heads, ffn = DECODERS[STEREO.get(name, name)]
    text = {  # t5-base; MusicGen uses its encoder only
        "vocab_size": 32128,
        "d_model": 768,
        "d_kv": 64,
        "d_ff": 3072,
        "num_layers": 12,
        "num_heads": 12,
        "relative_attention_num_buckets": 32,
        "feed_forward_proj": "relu",
    }
    audio = {  # encodec_32khz
        "sampling_rate": 32000,
        "audio_channels": 1,
        "codebook_size": CODEBOOK_SIZE,
        "codebook_dim": 128,
        "hidden_size": 128,
        "num_filters": 64,
        "num_lstm_layers": 2,
        "num_residual_layers": 1,
        "upsampling_ratios": [8, 5, 4, 4],
        "target_bandwidths": [2.2],
        "normalize": False,
        "use_causal_conv": False,
        "norm_type": "weight_norm",
        "pad_mode": "reflect",
    }
    decoder = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "ffn_dim": ffn,
        "num_codebooks": 8 if stereo else 4,
        "audio_channels": 2 if stereo else 1,
        "max_position_embeddings": 2048,
        "activation_function": "gelu",
        "tie_word_embeddings": False,
    }
    return musicgen_config(text, audio, decoder, CODEBOOK_SIZE)


def build_real_musicgen(name: str, device: str | torch.device = "cpu", seed: int = 0) -> Any:
    """A ``MusicgenForConditionalGeneration`` of preset ``name`` with random weights.

    ``device="meta"`` builds it without memory (shapes and parameter counts only: large is
    3.3 B parameters, 13 GB in fp32)."""
    torch.manual_seed(seed)
    with torch.device(device):
        return new_musicgen(real_musicgen_config(name)).eval()
