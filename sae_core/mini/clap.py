"""Train a mini CLAP on corpus clips and their captions and tags (issue 17.3).

transformers' ``ClapModel`` (an HTSAT audio tower over log-mel spectrograms, a
RoBERTa-style text tower, both projected into one space) trained with its own symmetric
contrastive loss (Elizalde et al. 2023; Wu et al. 2023). A track is paired with its
caption half of the time and otherwise with one to three of its concepts in words
("minor key", "flute", "fast tempo"), so that short zero-shot prompts and the
``clap-vocab`` labeler's words land where the concept is. Audio features are computed
once per track by the real feature extractor, set to hear pitch (docs/models.md): 16 kHz,
128 mel bins over 1-8 kHz, where slaney's mel scale is logarithmic and a bin is 0.28 of a
semitone (the real checkpoints' 64 bins over 0-14 kHz are 2-7 semitones wide at 130-520 Hz).

Saved with ``save_pretrained`` (model, tokenizer, feature extractor): ``--clap DIR``
loads it through :meth:`ClapScorer.load`, the path of real checkpoints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from artifact_schemas import CORPUS_METADATA, load_table
from artifact_schemas.settings import setting
from sae_core.clap import _TINY_WORDS, ClapFrontEnd, clap_parts
from sae_core.mini.codec import load_corpus_audio, save_pretrained_atomic
from sae_core.mini.loop import LoopConfig, LossMetrics, StepLoop


def concept_phrases(row: pd.Series) -> list[str]:
    """A track's concepts in the words prompts use ("minor key", "flute", "with drums")."""
    return [
        f"{row['tempo']} tempo",
        f"{row['mode']} key",
        str(row["instrument"]),
        f"{row['register']} register",
        str(row["density"]),
        "without drums" if row["drums"] == "no" else "with drums",
        str(row["loudness"]),
    ]


@dataclass(kw_only=True)
class ClapTrainConfig(LoopConfig):
    """What ``train_clap`` needs; validated on construction, naming the field at fault."""

    steps: int = setting(900, ge=1)
    audio_hidden_size: int = 64
    text_hidden_size: int = 64
    projection_dim: int = 64
    batch_size: int = setting(32, ge=2)  # a contrastive loss needs two pairs at least
    """Clip-text pairs per step (distinct tracks)."""
    # The audio front end (ClapFrontEnd; saved in the feature extractor's config).
    sample_rate: int = 16000
    """The feature extractor's rate (Hz)."""
    fft_window_size: int = 2048
    """STFT window (samples). 128 ms: FFT bins of 7.8 Hz, a semitone at 131 Hz."""
    hop_length: int = 320
    """STFT hop (samples). 50 frames/s: 501 frames per 10 s fit HTSAT's 256 x 256 image with
    128 mel bins."""
    num_mel_bins: int = 128
    """Mel bins (divides spec_size)."""
    frequency_min: float = 1000.0
    """Lowest mel frequency (Hz). Slaney's mel scale is linear below 1 kHz: from here up every
    bin is the same share of a semitone."""
    frequency_max: float = 8000.0
    """Highest mel frequency (Hz)."""
    spec_size: int = 256
    """HTSAT's square spectrogram image side."""
    patch_size: int = 8
    """HTSAT's patch side (and stride). 8 x 8 patches: 1,024 tokens a clip, a quarter of the
    real geometry's 4,096 (4 x 4 patches)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.front_end()  # validates the front end's fields
        for name in ("audio_hidden_size", "text_hidden_size", "projection_dim"):
            value = getattr(self, name)
            if value < 8 or value % 4:
                raise ValueError(f"{name}: a multiple of 4, at least 8, got {value}")

    def front_end(self) -> ClapFrontEnd:
        return ClapFrontEnd(
            sample_rate=self.sample_rate,
            fft_window_size=self.fft_window_size,
            hop_length=self.hop_length,
            num_mel_bins=self.num_mel_bins,
            frequency_min=self.frequency_min,
            frequency_max=self.frequency_max,
            spec_size=self.spec_size,
            patch_size=self.patch_size,
        )


def build_untrained(cfg: ClapTrainConfig, vocab: list[str]) -> tuple[Any, Any, Any]:

    return clap_parts(
        vocab, cfg.audio_hidden_size, cfg.text_hidden_size, cfg.projection_dim, cfg.seed, cfg.front_end()
    )


def clap_vocabulary(texts: list[str]) -> list[str]:
    """Special tokens, the tiny CLAP's music words, and every word of the training texts."""

    words = {w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())}
    return ["<pad>", "<s>", "</s>", "<unk>", *sorted(set(_TINY_WORDS) | words)]


class ClapTrainer(StepLoop):
    name = "CLAP"

    def __init__(self, cfg: ClapTrainConfig, features: torch.Tensor, meta: pd.DataFrame) -> None:
        super().__init__(cfg)
        self.cfg, self.features = cfg, features
        self.captions = [str(c) for c in meta["caption"]]
        self.phrases = [concept_phrases(row) for _, row in meta.iterrows()]
        self.vocab = clap_vocabulary(self.captions + [p for ps in self.phrases for p in ps])
        model, self.tokenizer, self.feature_extractor = build_untrained(cfg, self.vocab)
        self.model = model.to(cfg.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.01)

    def modules(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer}

    def identity(self) -> dict[str, Any]:
        return {**self.cfg.identity(), "vocab": self.vocab}

    def texts(self, idx: np.ndarray, rng: np.random.Generator) -> list[str]:
        out = []
        for i in idx:
            if rng.random() < 0.5:
                out.append(self.captions[i])
            else:
                chosen = rng.choice(len(self.phrases[i]), size=int(rng.integers(1, 4)), replace=False)
                out.append("a " + ", ".join(self.phrases[i][j] for j in sorted(chosen)) + " melody")
        return out

    def train_step(self) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, self.step])
        # Distinct tracks: a repeated track would be its own false negative.
        idx = rng.choice(len(self.captions), size=min(self.cfg.batch_size, len(self.captions)), replace=False)
        tok = self.tokenizer(self.texts(idx, rng), return_tensors="pt", padding=True)
        out = self.model(
            input_ids=tok["input_ids"].to(self.cfg.device),
            attention_mask=tok["attention_mask"].to(self.cfg.device),
            input_features=self.features[torch.from_numpy(idx)].to(self.cfg.device),
            return_loss=True,
        )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": out.loss.detach()}


def corpus_features(audio: list[np.ndarray], feature_extractor: Any) -> torch.Tensor:
    """Log-mel input features ``[tracks, 1, frames, mel bins]`` of tracks at the extractor's rate."""
    rate = int(feature_extractor.sampling_rate)
    out = [feature_extractor([a], sampling_rate=rate, return_tensors="pt")["input_features"] for a in audio]
    return torch.cat(out)


def train_clap(cfg: ClapTrainConfig) -> LossMetrics:
    """Train on ``cfg.corpus``'s tracks and captions; save to ``cfg.out`` (``save_pretrained``)."""
    with cfg.recorded("train-clap", cfg.corpus):
        # Checked on the metadata, before minutes of reading and resampling every track.
        n_tracks = len(load_table(cfg.corpus / "metadata.csv", CORPUS_METADATA))
        if n_tracks < cfg.batch_size:
            raise ValueError(f"batch_size: the corpus has {n_tracks} tracks, fewer than {cfg.batch_size}")
        audio, meta = load_corpus_audio(cfg.corpus, cfg.sample_rate)
        _, _, extractor = build_untrained(cfg, ["<pad>"])
        features = corpus_features(audio, extractor)
        cfg.out.mkdir(parents=True, exist_ok=True)
        trainer = ClapTrainer(cfg, features, meta)
        trainer.run()
        save_pretrained_atomic(cfg.out, trainer.model, trainer.tokenizer, trainer.feature_extractor)
        return trainer.write_metrics()  # loss: contrastive (chance log(batch_size))
