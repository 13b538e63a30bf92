"""Train a mini MusicGen on a corpus's codec tokens and captions (issue 17.2).

``MusicgenForConditionalGeneration`` over a mini codec (frozen): the fitted spectral
codec (``sae-core fit-codec``, kept in the model's ``codec/``) or a trained EnCodec
(``sae-core train-codec``, the model's ``audio_encoder`` as in real checkpoints), a
small T5 text encoder over a word tokenizer and a few decoder blocks, trained
as MusicGen is (Copet et al. 2023): next-token cross-entropy on the codec's codebooks in
the delay pattern (codebook ``k`` of frame ``f`` at position ``f + 1 + k``), the text
entering by cross-attention, and the condition dropped for a share of the examples so
that classifier-free guidance has an unconditional model to push away from. A dropped
condition is what generation's unconditional half sees: an all-zero attention mask, so
the text states are zeroed and masked.

Saved with ``save_pretrained`` (model, tokenizer, generation config): ``--model DIR``
loads it through :meth:`TransformersMusicGen.load`, the code path of real checkpoints.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artifact_schemas.settings import setting
from sae_core.mini.codec import load_corpus_audio, save_pretrained_atomic
from sae_core.mini.loop import LoopConfig, LossMetrics, StepLoop
from sae_core.models.codec import MODEL_CODEC_DIR, Codec, EncodecCodec, is_codec_dir, load_codec
from sae_core.presets.musicgen import CAPTION_WORDS, musicgen_config, new_musicgen, word_level_tokenizer

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class MusicgenTrainConfig(LoopConfig):
    """What ``train_musicgen`` needs; validated on construction, naming the field at fault."""

    codec: Path
    """A fitted codec (sae-core fit-codec; saved into the model's codec/) or a trained
    EnCodec (sae-core train-codec; the model's audio_encoder)."""
    layers: int = setting(4, ge=1)
    """Decoder blocks."""
    hidden_size: int = setting(128, ge=1)
    """Decoder width (d_model)."""
    heads: int = setting(4, ge=1)
    ffn_dim: int = setting(512, ge=1)
    text_layers: int = setting(2, ge=1)
    text_hidden_size: int = setting(64, ge=1)
    batch_size: int = setting(4, ge=1)
    """Tracks per step."""
    crop_frames: int = setting(250, ge=0)
    """Frames of each training example, cut at a seeded offset (0: whole tracks)."""
    condition_dropout: float = setting(0.15, ge=0, lt=1)
    """Share of examples trained without their caption (for classifier-free guidance)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.codec = Path(self.codec)
        if self.hidden_size % self.heads or self.text_hidden_size % self.heads:
            raise ValueError(
                f"heads: must divide hidden_size ({self.hidden_size}) and text_hidden_size "
                f"({self.text_hidden_size}), got {self.heads}"
            )
        if not is_codec_dir(self.codec):
            raise ValueError(
                f"codec: no codec in {self.codec} (sae-core fit-codec or sae-core train-codec writes one)"
            )


def caption_vocabulary(captions: list[str]) -> list[str]:
    """The word tokenizer's vocabulary: the tiny preset's music words plus the corpus's."""
    words = {w for c in captions for w in re.findall(r"\w+|[^\w\s]", c.lower())}
    return [*CAPTION_WORDS, *sorted(words - set(CAPTION_WORDS))]


def delay_labels(codes: torch.Tensor, pad: int) -> torch.Tensor:
    """``[batch, K, frames]`` codes as labels ``[batch, frames + K - 1, K]`` in the delay pattern.

    Label position ``p`` of codebook ``k`` is frame ``p - k``; positions outside are ``pad``
    (ignored by the loss). transformers shifts labels right by one start token, so frame
    ``f`` of codebook ``k`` enters the decoder at position ``f + 1 + k``, as in generation
    and in :meth:`TransformersMusicGen.delayed_input_ids`.
    """
    batch, k, frames = codes.shape
    out = torch.full((batch, frames + k - 1, k), pad, dtype=torch.long)
    for cb in range(k):
        out[:, cb : cb + frames, cb] = codes[:, cb]
    return out


def build_untrained(cfg: MusicgenTrainConfig, vocab: list[str], codec: Codec) -> tuple[Any, Any]:
    """The model (an EnCodec codec loaded and frozen) and its tokenizer, before training.

    Over a fitted codec the model's ``audio_encoder`` is a small placeholder with the
    codec's rate, frames and codebooks (never run); the codec is saved beside it.
    """
    size = codec.codebook_size
    encodec = codec.model if isinstance(codec, EncodecCodec) else None
    audio_config = encodec.config if encodec is not None else codec.encodec_config()  # type: ignore[attr-defined]
    text = {
        "vocab_size": len(vocab),
        "d_model": cfg.text_hidden_size,
        "d_kv": cfg.text_hidden_size // cfg.heads,
        "d_ff": 4 * cfg.text_hidden_size,
        "num_layers": cfg.text_layers,
        "num_heads": cfg.heads,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }
    decoder = {
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "ffn_dim": cfg.ffn_dim,
        "num_codebooks": codec.num_codebooks,
        "max_position_embeddings": 2048,
        "audio_channels": 1,
        "dropout": 0.1,
        "decoder_start_token_id": size,  # labels shift right by it
    }
    config = musicgen_config(text, audio_config, decoder, size)
    torch.manual_seed(cfg.seed)
    model = new_musicgen(config)
    if encodec is not None:
        model.audio_encoder.load_state_dict(encodec.state_dict())
    model.audio_encoder.requires_grad_(False)
    tokenizer = word_level_tokenizer(vocab, pad_token="<pad>", eos_token="</s>")
    return model, tokenizer


class MusicgenTrainer(StepLoop):
    name = "MusicGen"

    def __init__(
        self, cfg: MusicgenTrainConfig, codec: Codec, codes: torch.Tensor, captions: list[str]
    ) -> None:
        super().__init__(cfg)
        self.cfg, self.codes, self.captions = cfg, codes, captions
        self.vocab = caption_vocabulary(captions)
        if cfg.crop_frames > codes.shape[-1]:
            raise ValueError(
                f"crop_frames: {cfg.crop_frames} is longer than the tracks ({codes.shape[-1]} frames)"
            )
        model, self.tokenizer = build_untrained(cfg, self.vocab, codec)
        self.model = model.to(cfg.device)
        self.pad = int(self.model.config.decoder.pad_token_id)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)

    def modules(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer}

    def identity(self) -> dict[str, Any]:
        return {**self.cfg.identity(), "vocab": self.vocab}

    def set_train(self, training: bool) -> None:
        self.model.train(training)
        self.model.audio_encoder.eval()  # frozen, and its quantizer must not update

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Tracks (and crops) drawn from ``(seed, step)``, their captions, a seeded condition drop."""
        rng = np.random.default_rng([self.cfg.seed, step])
        idx = rng.integers(len(self.captions), size=self.cfg.batch_size)
        tok = self.tokenizer([self.captions[i] for i in idx], return_tensors="pt", padding=True)
        keep = torch.from_numpy(rng.random(len(idx)) >= self.cfg.condition_dropout)
        codes = self.codes[torch.from_numpy(idx)]
        if self.cfg.crop_frames:
            frames = self.cfg.crop_frames
            starts = rng.integers(codes.shape[-1] - frames + 1, size=len(idx))
            codes = torch.stack([c[:, s : s + frames] for c, s in zip(codes, starts, strict=True)])
        device = self.cfg.device
        return {
            "input_ids": tok["input_ids"].to(device),
            "attention_mask": (tok["attention_mask"] * keep[:, None]).to(device),
            "labels": delay_labels(codes, self.pad).to(device),
        }

    def train_step(self) -> dict[str, torch.Tensor]:
        loss = self.model(**self.batch(self.step)).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return {"loss": loss.detach()}


@torch.no_grad()
def corpus_codes(codec: Codec, corpus: Path) -> tuple[torch.Tensor, list[str]]:
    """Codec tokens ``[tracks, K, frames]`` of every corpus track (cut to the shortest), and captions."""
    audio, meta = load_corpus_audio(corpus, codec.sample_rate)
    n = min(len(a) for a in audio)
    if max(len(a) for a in audio) > n:
        shortest = meta["path"].iloc[int(np.argmin([len(a) for a in audio]))]
        log.warning(
            "corpus: tracks differ in length; every track is cut to the shortest, %s (%.1f s)",
            shortest, n / codec.sample_rate,
        )  # fmt: skip
    codes = [codec.encode(torch.from_numpy(a[:n])[None])[0].cpu() for a in audio]
    return torch.stack(codes), [str(c) for c in meta["caption"]]


def train_musicgen(cfg: MusicgenTrainConfig) -> LossMetrics:
    """Train on ``cfg.corpus`` encoded by ``cfg.codec``; save to ``cfg.out`` (``save_pretrained``).

    Over a fitted codec the codec is saved into ``cfg.out/codec`` with the model, so that
    ``--model DIR`` encodes and decodes with it.
    """
    with cfg.recorded("train-musicgen", cfg.corpus, cfg.codec):
        codec = load_codec(cfg.codec, device=cfg.device)
        codes, captions = corpus_codes(codec, cfg.corpus)
        cfg.out.mkdir(parents=True, exist_ok=True)
        trainer = MusicgenTrainer(cfg, codec, codes, captions)
        trainer.run()
        if isinstance(codec, EncodecCodec):
            save_pretrained_atomic(cfg.out, trainer.model, trainer.tokenizer)
            # An earlier model in --out over a fitted codec left its codec/: it would be
            # loaded in place of this model's own EnCodec.
            shutil.rmtree(cfg.out / MODEL_CODEC_DIR, ignore_errors=True)
        else:
            save_pretrained_atomic(cfg.out, trainer.model, trainer.tokenizer, _CodecFolder(codec))
        return trainer.write_metrics()  # loss: cross-entropy per codebook token


class _CodecFolder:
    """A fitted codec saved as ``codec/`` of a model directory (``save_pretrained``'s shape)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def save_pretrained(self, directory: str | Path) -> None:
        self.codec.save(Path(directory) / MODEL_CODEC_DIR)
