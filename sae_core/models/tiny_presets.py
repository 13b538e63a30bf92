"""The tiny random MusicGen preset for the transformers backend, and what the presets share.

Factories live here, apart from the adapter (``transformers_musicgen``): a codec
calibration signal, a word tokenizer, ``new_musicgen`` (also used by the mini MusicGen
and the real-shape presets) and ``build_tiny_musicgen``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sae_core.synth.timbre import DRUMS, INSTRUMENTS, render_drum, render_note


def calibration_audio(sr: int, seed: int, seconds: float = 30.0) -> torch.Tensor:
    """Music-like audio for initialising untrained codec codebooks (tiny presets only).

    Notes of every synthetic-corpus instrument and drum hits over a 45 dB range of levels,
    so that music, not only test tones, spreads over the codebook entries.
    """
    rng = np.random.default_rng([seed, 11])
    audio = np.zeros(int(seconds * sr) + sr)
    t = 0.0
    while t < seconds:
        level = 10 ** (rng.uniform(-50, -5) / 20)
        if rng.random() < 0.25:
            hit = render_drum(str(rng.choice(DRUMS)), sr, level, rng)
        else:
            hit = render_note(
                str(rng.choice(INSTRUMENTS)),
                float(rng.integers(36, 96)),
                float(rng.uniform(0.05, 0.4)),
                sr,
                level,
                rng,
            )
        start = int(t * sr)
        audio[start : start + len(hit)] += hit[: len(audio) - start]
        t += float(rng.uniform(0.02, 0.2))
    return torch.from_numpy(audio[: int(seconds * sr)].astype(np.float32))


def word_level_tokenizer(vocab: Sequence[str], **special_tokens: str) -> Any:
    """A lowercasing, whitespace-splitting word tokenizer over ``vocab`` (unknown words -> "<unk>").

    Real checkpoints ship their own (sentencepiece or BPE) tokenizers; the tiny presets
    need one that builds offline and saves with ``save_pretrained`` like those.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **special_tokens)


# --------------------------------------------------------------------------- tiny preset


def tiny_musicgen_config(seed: int = 0) -> Any:
    """A ~0.6M-parameter MusicGen with the real model's shape conventions.

    32 kHz EnCodec with hop 640 (50 frames/s), 4 codebooks, delay pattern, T5 text
    encoder, cross-attention: everything the real checkpoints have, only smaller.
    """
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    codebook = 256
    text = T5Config(  # type: ignore[call-arg]
        vocab_size=len(_TINY_VOCAB),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    audio = EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        upsampling_ratios=[8, 5, 4, 4],
        # bandwidth = codebooks * frame_rate * log2(codebook_size) / 1000 -> 4 codebooks
        target_bandwidths=[4 * 50 * 8 / 1000],
        num_filters=4,
        hidden_size=32,
        codebook_size=codebook,
        codebook_dim=32,
        num_lstm_layers=1,
        normalize=False,
    )
    from sae_core.models.transformers_musicgen import quiet_delay_pattern_warning

    quiet_delay_pattern_warning()  # MusicGen's pad token lies past the vocabulary by design
    decoder = MusicgenDecoderConfig(
        vocab_size=codebook,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        ffn_dim=256,
        num_codebooks=4,
        max_position_embeddings=2048,
        pad_token_id=codebook,
        bos_token_id=codebook,
        audio_channels=1,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict()
    )
    return config


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


# Words of the synthetic corpus's captions and common music vocabulary; anything else
# maps to <unk>. (Real checkpoints ship their T5 sentencepiece tokenizer.)
_TINY_VOCAB = [
    "<pad>",
    "</s>",
    "<unk>",
    *sorted(
        set(
            [
                "a",
                "an",
                "the",
                "in",
                "with",
                "without",
                "and",
                "of",
                "at",
                "s",
                "slow",
                "medium",
                "fast",
                "sparse",
                "dense",
                "low",
                "mid",
                "high",
                "register",
                "piano",
                "organ",
                "pluck",
                "strings",
                "bell",
                "flute",
                "drums",
                "drum",
                "entering",
                "quiet",
                "loud",
                "major",
                "minor",
                "melody",
                "c",
                "c#",
                "d",
                "d#",
                "e",
                "f",
                "f#",
                "g",
                "g#",
                "a#",
                "b",
                "rock",
                "jazz",
                "pop",
                "electronic",
                "ambient",
                "classical",
                "happy",
                "sad",
                "calm",
                "energetic",
                "guitar",
                "bass",
                "synth",
                "voice",
                "beat",
                "tempo",
                "bright",
                "dark",
            ]
        )
    ),
]


def new_musicgen(config: Any) -> Any:
    """A freshly initialised ``MusicgenForConditionalGeneration`` (torch's generator as the
    caller seeded it) with MusicGen's generation defaults: sampling, top-k 250, CFG 3, and
    the start/pad token one past the codebook, as in the real checkpoints."""
    from transformers import GenerationConfig, MusicgenForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from sae_core.models.transformers_musicgen import quiet_delay_pattern_warning

    quiet_delay_pattern_warning()

    verbosity = hf_logging.get_verbosity()
    # The decoder's pad/start token is one past its vocabulary, as in the real
    # checkpoints; transformers warns about that at construction. It is by design.
    hf_logging.set_verbosity_error()
    try:
        model = MusicgenForConditionalGeneration(config)
    finally:
        hf_logging.set_verbosity(verbosity)
    start = int(config.decoder.vocab_size)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start,
        pad_token_id=start,
        bos_token_id=start,
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
        top_k=250,
    )
    return model


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
    tokenizer = word_level_tokenizer(_TINY_VOCAB, pad_token="<pad>", eos_token="</s>")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
