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
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from artifact_schemas import FieldError
from sae_core.models.base import GUIDANCE_SCALE, Intervention, MusicModel
from sae_core.models.codec import MODEL_CODEC_DIR, Codec, EncodecCodec, is_placeholder, load_codec

log = logging.getLogger(__name__)


class _DelayPatternTokenFilter(logging.Filter):
    """Drop transformers' warning that MusicGen's start/pad token lies outside the vocabulary.

    It does by design, in every MusicGen checkpoint (the token is ``vocab_size``, one past
    the codebook entries); the warning would otherwise greet every user on every load.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "must be `None` or an integer within the vocabulary" not in record.getMessage()


_QUIET = _DelayPatternTokenFilter()


def quiet_delay_pattern_warning() -> None:
    """Install the filter above (once; at load time, not at import)."""
    for name in ("transformers.configuration_utils", "transformers.models.musicgen.configuration_musicgen"):
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


class TransformersMusicGen(MusicModel):
    """A ``MusicgenForConditionalGeneration`` with its text tokenizer and its codec.

    The codec is the model's own ``audio_encoder`` (EnCodec, every real checkpoint) unless
    another is given: a model trained on a fitted codec keeps it in ``codec/`` of its
    directory, and :meth:`load` reads it from there (``sae_core.models.codec``).
    """

    backend = "transformers"

    def __init__(self, model: Any, tokenizer: Any, name: str = "", codec: Codec | None = None) -> None:
        if int(getattr(model.config.decoder, "audio_channels", 1)) != 1:
            raise FieldError(
                "model",
                f"{name or 'model'}: stereo MusicGen (audio_channels 2: each step holds a left "
                "and a right codebook set, interleaved over 8 codebooks) is not supported; use the "
                "mono checkpoint of the same size (e.g. facebook/musicgen-small)",
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self._decoder = model.decoder.model.decoder
        self._pad = int(model.config.decoder.pad_token_id)
        k = int(model.config.decoder.num_codebooks)
        audio = model.config.audio_encoder
        if codec is None and is_placeholder(audio):
            raise FieldError(
                "model",
                f"{name or 'model'}: it was trained over a fitted codec, which is missing: no "
                f"{MODEL_CODEC_DIR}/ beside its weights (its audio_encoder is a placeholder that "
                "would decode noise); copy the whole model directory",
            )
        self.codec: Codec = codec or EncodecCodec(model.audio_encoder, num_codebooks=k)
        vocab = int(model.config.decoder.vocab_size)
        ours = (
            self.codec.num_codebooks,
            self.codec.codebook_size,
            self.codec.sample_rate,
            self.codec.frame_rate,
        )
        theirs = (k, vocab, int(audio.sampling_rate), float(audio.frame_rate))
        if ours != theirs:
            raise FieldError(
                "model",
                f"{name or 'model'}: its codec has {ours[0]} codebooks of {ours[1]} at {ours[2]} Hz and "
                f"{ours[3]:g} frames/s; the model was trained on {theirs[0]} of {theirs[1]} at "
                f"{theirs[2]} Hz and {theirs[3]:g} frames/s",
            )

    @classmethod
    def load(
        cls, path_or_id: str, device: str = "cpu", dtype: torch.dtype | None = None
    ) -> TransformersMusicGen:
        """Load from a local directory or a hub id (offline when it is in the HF cache)."""
        # transformers' model classes take ~2 s to import: loaded where a model is built.
        from transformers import AutoConfig, AutoTokenizer, MusicgenForConditionalGeneration

        quiet_delay_pattern_warning()
        try:
            kind = AutoConfig.from_pretrained(path_or_id).model_type
        except (OSError, ValueError):
            kind = "musicgen"  # let the load below say what is wrong
        if kind != "musicgen":
            raise FieldError(
                "model",
                f"{path_or_id!r}: a '{kind}' checkpoint, not MusicGen; musicgen-melody "
                "(chroma conditioning, another model class) is not supported",
            )
        try:
            model = MusicgenForConditionalGeneration.from_pretrained(path_or_id, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path_or_id)
        except OSError as exc:
            raise FieldError(
                "model",
                f"{path_or_id!r}: cannot load a MusicGen checkpoint from it ({exc}). Give a "
                "directory written by save_pretrained (e.g. 'sae-core tiny-model --out DIR') or a hub "
                "id that is in the local Hugging Face cache.",
            ) from exc
        codec_dir = Path(path_or_id) / MODEL_CODEC_DIR
        codec = load_codec(codec_dir, device=device) if codec_dir.is_dir() else None
        return cls(model.to(device), tokenizer, name=str(path_or_id), codec=codec)  # type: ignore[arg-type]

    # -- shape facts ---------------------------------------------------------------

    @property
    def d_model(self) -> int:
        return int(self.model.config.decoder.hidden_size)

    @property
    def n_layers(self) -> int:
        return int(self.model.config.decoder.num_hidden_layers)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.codec.frame_rate

    @property
    def num_codebooks(self) -> int:
        return int(self.model.config.decoder.num_codebooks)

    def decoder_layers(self) -> Sequence[nn.Module]:
        return self._decoder.layers

    # -- audio tokens ----------------------------------------------------------------

    @torch.inference_mode()
    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(audio).to(self.device)

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
        guidance_scale: float = GUIDANCE_SCALE,
        temperature: float = 1.0,
        top_k: int = 250,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled codec tokens [batch, K, frames] and their decoded audio [batch, samples]."""
        cfg = guidance_scale > 1
        if not cfg:
            # Without guidance there is no unconditional copy to spare.
            interventions = [Intervention(iv.layer, iv.delta, "both") for iv in interventions]
        inputs = self._text_inputs(texts, len(texts))
        codec = self.model.audio_encoder
        decode = codec.decode
        seen: list[torch.Tensor] = []

        own_codec = isinstance(self.codec, EncodecCodec) and self.codec.model is codec

        def recording_decode(audio_codes: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            seen.append(audio_codes)  # [1, batch, K, frames]
            if own_codec:
                return decode(audio_codes, *args, **kwargs)
            audio = self.codec.decode(audio_codes[0])[:, None]
            return SimpleNamespace(audio_values=audio.to(audio_codes.device))

        # transformers decodes the sampled tokens inside generate() and returns only audio;
        # shadowing the codec's decode on this instance (undone below) records the tokens
        # and, for a model over another codec, decodes with that codec instead.
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
