"""MusicGen through Hugging Face ``transformers`` (the default adapter).

Codebook delay pattern (Copet et al. 2023, sec. 2.2; ``build_delay_pattern_mask`` in
transformers): the decoder reads one position per step; position 0 holds the start
token in every codebook, and codebook ``k``'s token for frame ``f`` sits at position
``f + 1 + k``. Position ``s`` therefore reads frame ``s - 1`` in the first codebook
(and older frames in the finer ones) and predicts frame ``s``'s first codebook.
We keep positions ``1 .. T`` for a clip of ``T`` frames and index them by frame
``f = s - 1``: one activation row per audio frame, at the position where that frame's
coarsest code enters. The start position and the ``K - 1`` tail positions, which
exist only to flush the finer codebooks, are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_core.models.base import Intervention, MusicModel
from sae_core.models.tiny_presets import calibration_audio, word_level_tokenizer

log = logging.getLogger(__name__)


class _DelayPatternTokenFilter(logging.Filter):
    """Drop transformers' warning that MusicGen's start/pad token lies outside the vocabulary.

    It does by design, in every MusicGen checkpoint (the token is ``vocab_size``, one past
    the codebook entries); the warning would otherwise greet every user on every load.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "must be `None` or an integer within the vocabulary" not in record.getMessage()


logging.getLogger("transformers.configuration_utils").addFilter(_DelayPatternTokenFilter())
logging.getLogger("transformers.models.musicgen.configuration_musicgen").addFilter(_DelayPatternTokenFilter())


class TransformersMusicGen(MusicModel):
    """A ``MusicgenForConditionalGeneration`` with its text tokenizer."""

    backend = "transformers"

    def __init__(self, model: Any, tokenizer: Any, name: str = "") -> None:
        if int(getattr(model.config.decoder, "audio_channels", 1)) != 1:
            raise ValueError(
                f"--model {name or 'model'}: stereo MusicGen (audio_channels 2: each step holds a left "
                "and a right codebook set, interleaved over 8 codebooks) is not supported; use the "
                "mono checkpoint of the same size (e.g. facebook/musicgen-small)"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._decoder = model.decoder.model.decoder
        self._pad = int(model.config.decoder.pad_token_id)

    @classmethod
    def load(
        cls, path_or_id: str, device: str = "cpu", dtype: torch.dtype | None = None
    ) -> TransformersMusicGen:
        """Load from a local directory or a hub id (offline when it is in the HF cache)."""
        from transformers import AutoConfig, AutoTokenizer, MusicgenForConditionalGeneration

        try:
            kind = AutoConfig.from_pretrained(path_or_id).model_type
        except (OSError, ValueError):
            kind = "musicgen"  # let the load below say what is wrong
        if kind != "musicgen":
            raise ValueError(
                f"--model {path_or_id!r}: a '{kind}' checkpoint, not MusicGen; musicgen-melody "
                "(chroma conditioning, another model class) is not supported"
            )
        try:
            model = MusicgenForConditionalGeneration.from_pretrained(path_or_id, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path_or_id)
        except OSError as exc:
            raise ValueError(
                f"--model {path_or_id!r}: cannot load a MusicGen checkpoint from it ({exc}). Give a "
                "directory written by save_pretrained (e.g. 'sae-core tiny-model --out DIR') or a hub "
                "id that is in the local Hugging Face cache."
            ) from exc
        return cls(model.to(device), tokenizer, name=str(path_or_id))  # type: ignore[arg-type]

    # -- shape facts ---------------------------------------------------------------

    @property
    def d_model(self) -> int:
        return int(self.model.config.decoder.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.decoder.num_hidden_layers)

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.audio_encoder.sampling_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.config.audio_encoder.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.config.decoder.num_codebooks)

    def decoder_layers(self) -> Sequence[nn.Module]:
        return self._decoder.layers

    # -- audio tokens ----------------------------------------------------------------

    @torch.inference_mode()
    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.to(self.device, dtype=next(self.model.audio_encoder.parameters()).dtype)
        out = self.model.audio_encoder.encode(x[:, None, :])
        # [chunks=1, batch, codebooks, frames]; the decoder uses the first K codebooks.
        return out.audio_codes[0, :, : self.num_codebooks]

    def delayed_input_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder input [batch*K, frames+1] in the delay pattern, start/pad token elsewhere."""
        batch, k, frames = codes.shape
        ids = torch.full((batch, k, frames + 1), self._pad, dtype=torch.long, device=codes.device)
        for cb in range(k):
            n = max(0, frames - cb)
            ids[:, cb, cb + 1 : cb + 1 + n] = codes[:, cb, :n]
        return ids.reshape(batch * k, frames + 1)

    def _positions_for_frames(self, n_frames: int) -> slice:
        return slice(1, n_frames + 1)

    def _text_inputs(self, texts: Sequence[str] | None, batch: int) -> dict[str, Any]:
        if texts is None or all(not t for t in texts):
            null = self.model.get_unconditional_inputs(num_samples=batch)
            return {"encoder_outputs": null.encoder_outputs, "attention_mask": null.attention_mask}
        tok = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        return {
            "input_ids": tok["input_ids"].to(self.device),
            "attention_mask": tok["attention_mask"].to(self.device),
        }

    def _teacher_forced(self, codes: torch.Tensor, texts: Sequence[str] | None) -> None:
        ids = self.delayed_input_ids(codes.to(self.device))
        self.model(decoder_input_ids=ids, use_cache=False, **self._text_inputs(texts, codes.shape[0]))

    # -- generation ------------------------------------------------------------------

    @torch.inference_mode()
    def generate_codes(
        self,
        texts: Sequence[str],
        seconds: float,
        seed: int,
        interventions: Sequence[Intervention] = (),
        guidance_scale: float = 3.0,
        temperature: float = 1.0,
        top_k: int = 250,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled codec tokens [batch, K, frames] and their decoded audio [batch, samples]."""
        cfg = guidance_scale > 1
        if not cfg:
            # Without guidance there is no unconditional copy to spare.
            interventions = [
                Intervention(iv.layer, iv.direction, iv.strength, "both") for iv in interventions
            ]
        inputs = self._text_inputs(texts, len(texts))
        codec = self.model.audio_encoder
        decode = codec.decode
        seen: list[torch.Tensor] = []

        def recording_decode(audio_codes: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            seen.append(audio_codes)
            return decode(audio_codes, *args, **kwargs)

        # transformers decodes the sampled tokens inside generate() and returns only audio;
        # shadowing the codec's decode on this instance (undone below) records the tokens.
        codec.decode = recording_decode
        torch.manual_seed(seed)
        try:
            with self.hooks(interventions=interventions):
                audio = self.model.generate(
                    **inputs,
                    do_sample=True,
                    guidance_scale=guidance_scale if cfg else None,
                    temperature=temperature,
                    top_k=top_k,
                    # The delay pattern needs K - 1 extra steps to complete the last frame.
                    max_new_tokens=max(1, round(seconds * self.frame_rate)) + self.num_codebooks - 1,
                )
        finally:
            del codec.decode
        return seen[-1][0].cpu(), audio[:, 0].float().cpu()


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
