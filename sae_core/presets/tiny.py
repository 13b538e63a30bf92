"""The tiny random MusicGen preset for the transformers backend (``sae-core tiny-model``).

A ~0.6M-parameter model with the real model's conventions, built through the shared
:func:`~sae_core.presets.musicgen.musicgen_config`. Its codec's codebooks are drawn from a
music-like calibration signal (the synthetic corpus's instruments and drums), which the
tiny audiocraft preset uses too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from artifact_schemas import FieldError
from sae_core.models import BACKENDS
from sae_core.presets.calibration import calibration_audio
from sae_core.presets.musicgen import CAPTION_WORDS, musicgen_config, new_musicgen, t5_word_tokenizer
from sae_core.presets.tiny_audiocraft import build_tiny_audiocraft


def tiny_musicgen_config(seed: int = 0) -> Any:
    """A ~0.6M-parameter MusicGen with the real model's shape conventions.

    32 kHz EnCodec with hop 640 (50 frames/s), 4 codebooks, delay pattern, T5 text
    encoder, cross-attention: everything the real checkpoints have, only smaller.
    """
    codebook = 256
    text = {
        "vocab_size": len(CAPTION_WORDS),
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }
    audio = {
        "sampling_rate": 32000,
        "audio_channels": 1,
        "upsampling_ratios": [8, 5, 4, 4],
        # bandwidth = codebooks * frame_rate * log2(codebook_size) / 1000 -> 4 codebooks
        "target_bandwidths": [4 * 50 * 8 / 1000],
        "num_filters": 4,
        "hidden_size": 32,
        "codebook_size": codebook,
        "codebook_dim": 32,
        "num_lstm_layers": 1,
        "normalize": False,
    }
    decoder = {
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "ffn_dim": 256,
        "num_codebooks": 4,
        "max_position_embeddings": 2048,
        "audio_channels": 1,
    }
    return musicgen_config(text, audio, decoder, codebook)


_TINY_HEAD_GAIN = 25.0


@torch.no_grad()
def _init_codebooks(codec: Any, seed: int) -> None:
    """Give a fresh EnCodec's all-zero codebooks entries drawn from its own encoder outputs.

    EnCodec initialises each residual-VQ codebook by k-means on the first training batch
    (Defossez et al. 2022, sec. 3.2); a random codec left at zero would map every frame to
    code 0. Drawing entries from the encoder outputs of a calibration signal (and of the
    residuals, for the finer codebooks) is the untrained analogue: distinct sounds get
    distinct codes. The calibration signal is music-like on purpose (notes of every
    instrument and drum hits of the synthetic corpus, over a 45 dB range of levels),
    so that music, not only test tones, spreads over the codebook.
    """
    gen = torch.Generator().manual_seed(seed)
    sr = int(codec.config.sampling_rate)
    residual = codec.encoder(calibration_audio(sr, seed)[None, None, :])[0].T  # [frames, dim]
    for layer in codec.quantizer.layers:
        book = layer.codebook
        entries = _kmeans(residual, book.embed.shape[0], gen)
        book.embed.copy_(entries)
        book.embed_avg.copy_(entries)
        residual = residual - layer.decode(layer.encode(residual.T[None]))[0].T


def _kmeans(points: torch.Tensor, k: int, gen: torch.Generator, iters: int = 20) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) and Lloyd iterations; small data only."""
    centres = points[torch.randint(0, len(points), (1,), generator=gen)]
    for _ in range(1, k):
        d2 = torch.cdist(points, centres).min(dim=1).values.pow(2)
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1 / len(d2))
        centres = torch.cat([centres, points[torch.multinomial(probs, 1, generator=gen)]])
    for _ in range(iters):
        assign = torch.cdist(points, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return centres


def build_tiny_musicgen(out: str | Path, seed: int = 0) -> Path:
    """Build the tiny preset with random weights (fixed seed) and ``save_pretrained`` it.

    The result loads with :meth:`TransformersMusicGen.load`, the same code path as real weights.
    """
    out = Path(out)
    torch.manual_seed(seed)
    model = new_musicgen(tiny_musicgen_config(seed)).eval()
    _init_codebooks(model.audio_encoder, seed)
    with torch.no_grad():
        # At the default init (std 0.02) the logits of a random decoder are ~0.1 apart,
        # so sampling is near uniform and an intervention almost never changes a token.
        # Scaled heads give peaked distributions like a trained model's.
        for head in model.decoder.lm_heads:
            head.weight.mul_(_TINY_HEAD_GAIN)
    tokenizer = t5_word_tokenizer()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny(out: str | Path, seed: int = 0, backend: str = "transformers") -> Path:
    """The tiny random preset of ``backend``, saved in that backend's checkpoint format."""
    if backend == "transformers":
        return build_tiny_musicgen(out, seed=seed)
    if backend != "audiocraft":
        raise FieldError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    try:
        return build_tiny_audiocraft(out, seed=seed)
    except ImportError as exc:
        raise FieldError(
            "backend", f"audiocraft needs the audiocraft package ({exc}); see docs/models.md"
        ) from exc
