"""What every MusicGen this project builds shares: one config builder (T5 text encoder,
EnCodec audio config, decoder with MusicGen's start/pad token one past the codebook), the
fresh model with MusicGen's generation defaults, and the word tokenizer.

The tiny random preset (``presets.tiny``), the published shapes with random weights
(``presets.real``) and the trained mini MusicGen (``sae_core.mini.musicgen``) all build
through :func:`musicgen_config` and :func:`new_musicgen`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from sae_core.models.base import GUIDANCE_SCALE
from sae_core.models.transformers_musicgen import quiet_delay_pattern_warning


def musicgen_config(text: dict[str, Any], audio: Any, decoder: dict[str, Any], codebook_size: int) -> Any:
    """A ``MusicgenConfig`` from the T5 encoder's fields (``text``), EnCodec's (``audio``: a
    dict, or an ``EncodecConfig`` a codec already has) and the decoder's (``decoder``),
    whose vocabulary is ``codebook_size`` codes and whose start and pad token is the one
    past them, as in the real checkpoints."""
    # transformers takes seconds to import: only where a model is built, never at --help.
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    quiet_delay_pattern_warning()  # MusicGen's pad token lies past the vocabulary by design
    audio_config = audio if isinstance(audio, EncodecConfig) else EncodecConfig(**audio)
    decoder_config = MusicgenDecoderConfig(
        vocab_size=codebook_size, pad_token_id=codebook_size, bos_token_id=codebook_size, **decoder
    )
    return MusicgenConfig(
        text_encoder=T5Config(**text).to_dict(),
        audio_encoder=audio_config.to_dict(),
        decoder=decoder_config.to_dict(),
    )


def new_musicgen(config: Any) -> Any:
    """A freshly initialised ``MusicgenForConditionalGeneration`` (torch's generator as the
    caller seeded it) with MusicGen's generation defaults: sampling, top-k 250, CFG 3, and
    the start/pad token one past the codebook, as in the real checkpoints."""
    # transformers' model classes take ~2 s to import: loaded where a model is built.
    from transformers import GenerationConfig, MusicgenForConditionalGeneration
    from transformers.utils import logging as hf_logging

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
        guidance_scale=GUIDANCE_SCALE,
        max_length=1500,
        top_k=250,
    )
    return model


def word_level_tokenizer(vocab: Sequence[str], **special_tokens: str) -> Any:
    """A lowercasing, whitespace-splitting word tokenizer over ``vocab`` (unknown words -> "<unk>").

    Real checkpoints ship their own (sentencepiece or BPE) tokenizers; the tiny presets
    need one that builds offline and saves with ``save_pretrained`` like those.
    """
    # transformers' model classes take ~2 s to import: loaded where a model is built.
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", **special_tokens)


def t5_word_tokenizer() -> Any:
    """A word-level tokenizer over a few hundred caption words, with T5's special tokens
    (pad 0, eos 1): what the text encoder needs to run, not T5's SentencePiece vocabulary."""
    return word_level_tokenizer(CAPTION_WORDS, pad_token="<pad>", eos_token="</s>")


# Words of the synthetic corpus's captions and common music vocabulary; anything else
# maps to <unk>. (Real checkpoints ship their T5 sentencepiece tokenizer.)
CAPTION_WORDS = [
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
