"""Train a small EnCodec on a corpus: the codec of the mini MusicGen (issue 17.1).

The model is transformers' ``EncodecModel`` (mono, 50 frames/s, residual codebooks),
saved with ``save_pretrained`` so that it loads like ``facebook/encodec_32khz``. The
recipe is EnCodec's (Defossez et al. 2022) without the adversarial losses, which need far
more compute than a CPU has for this:

* reconstruction: waveform L1 plus a multi-resolution STFT loss (spectral convergence and
  log magnitude, Yamamoto et al. 2020; ``auraloss``), and a mel-scale one for the low
  frequencies where melodies sit;
* residual vector quantization with codebooks updated by exponential moving averages,
  k-means initialisation on the first batch, dead-code restarts and a commitment loss
  (``vector-quantize-pytorch``: transformers' quantizer is inference only).

After training, the learned codebooks are copied into the ``EncodecModel``'s quantizer;
both quantize by nearest Euclidean entry, so ``EncodecModel.encode`` gives exactly the
codes seen in training (tested).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import auraloss
import numpy as np
import pandas as pd
import torch

from artifact_schemas import CORPUS_METADATA, FieldError, load_table, write_text_atomic
from artifact_schemas.settings import setting
from sae_core.audio import load_mono
from sae_core.mini.loop import METRICS_FILE, LoopConfig, StepLoop
from sae_core.models.codec import replace_dir

log = logging.getLogger(__name__)


# Hop sizes of 50 frames/s (MusicGen's frame rate) at the sample rates we support.
_RATIOS = {16000: [8, 5, 4, 2], 24000: [8, 5, 4, 3], 32000: [8, 5, 4, 4]}
FRAME_RATE = 50


@dataclass(kw_only=True)
class CodecTrainConfig(LoopConfig):
    """What ``train_codec`` needs; validated on construction, naming the field at fault."""

    sample_rate: int = setting(16000, choices=sorted(_RATIOS))
    """Audio rate (Hz); each rate has its own strides, all giving 50 frames/s."""
    codebooks: int = setting(4, ge=1)
    """Residual codebooks (MusicGen: 4)."""
    codebook_size: int = setting(256, ge=1)
    """Entries per codebook (a power of two: EnCodec chooses codebooks by bandwidth)."""
    num_filters: int = setting(16, ge=1)
    hidden_size: int = setting(64, ge=1)
    crop_seconds: float = setting(1.0, ge=0.2, le=10)
    """Length of each training crop."""
    commitment_weight: float = 0.25
    dead_code_threshold: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codebook_size & (self.codebook_size - 1):
            raise FieldError(
                "codebook_size", f"must be a power of two (EnCodec's bandwidths), got {self.codebook_size}"
            )

    @property
    def bandwidth(self) -> float:
        """kbps that select all ``codebooks`` (EnCodec chooses codebooks by bandwidth)."""
        return self.codebooks * FRAME_RATE * math.log2(self.codebook_size) / 1000

    def encodec_config(self) -> Any:
        # transformers' model classes take ~2 s to import: loaded where a model is built.
        from transformers import EncodecConfig

        return EncodecConfig(
            sampling_rate=self.sample_rate,
            audio_channels=1,
            upsampling_ratios=_RATIOS[self.sample_rate],
            target_bandwidths=[self.bandwidth],
            num_filters=self.num_filters,
            hidden_size=self.hidden_size,
            codebook_size=self.codebook_size,
            codebook_dim=self.hidden_size,
            num_lstm_layers=1,
            normalize=False,
            use_causal_conv=False,
        )


@dataclass
class CodecMetrics:
    """How a trained codec is judged (``metrics.json``; the loss curve is ``history``)."""

    steps: int
    l1: float
    stft: float
    codebook_usage: list[float]
    """Share of each codebook's entries used on the last evaluation batch."""
    wall_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def load_corpus_audio(corpus: Path, sample_rate: int) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Every track of a corpus as mono float32 at ``sample_rate``, and its metadata.csv rows
    in the same order (read once: the trainers need the captions and concepts too)."""

    meta = load_table(corpus / "metadata.csv", CORPUS_METADATA)
    audio = [load_mono(corpus / p, sample_rate).astype(np.float32) for p in meta["path"]]
    return audio, meta


class _Crops:
    """Seeded random crops of the corpus tracks; batch ``i`` is the same on every run."""

    def __init__(self, tracks: list[np.ndarray], length: int, seed: int) -> None:
        self.tracks = [t for t in tracks if len(t) >= length]
        if not self.tracks:
            raise ValueError(f"corpus: no track is as long as crop_seconds ({length} samples)")
        self.length, self.seed = length, seed

    def batch(self, step: int, size: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((size, 1, self.length), np.float32)
        for i in range(size):
            track = self.tracks[int(rng.integers(len(self.tracks)))]
            start = int(rng.integers(len(track) - self.length + 1))
            out[i, 0] = track[start : start + self.length]
        return torch.from_numpy(out)


class _Losses(torch.nn.Module):
    def __init__(self, sample_rate: int) -> None:

        super().__init__()
        self.stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=[2048, 1024, 512, 256],
            hop_sizes=[512, 256, 128, 64],
            win_lengths=[2048, 1024, 512, 256],
        )
        self.mel = auraloss.freq.MelSTFTLoss(
            sample_rate, fft_size=2048, hop_size=256, win_length=2048, n_mels=80
        )

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - x).abs().mean(), self.stft(y, x) + self.mel(y, x)


class CodecTrainer(StepLoop):
    """EnCodec encoder/decoder, an EMA residual VQ and Adam, in the shared step loop."""

    name = "codec"

    def __init__(self, cfg: CodecTrainConfig, crops: _Crops | None = None) -> None:
        # transformers' model classes take ~2 s to import: loaded where a model is built.
        from transformers import EncodecModel
        from vector_quantize_pytorch import ResidualVQ  # ~1.5 s to import (einx), only train-codec needs it

        super().__init__(cfg)
        self.cfg, self.crops = cfg, crops
        torch.manual_seed(cfg.seed)
        model: Any = EncodecModel(cfg.encodec_config())
        self.model = model.to(cfg.device)
        self.rvq = ResidualVQ(
            dim=cfg.hidden_size,
            num_quantizers=cfg.codebooks,
            codebook_size=cfg.codebook_size,
            decay=0.99,
            kmeans_init=True,
            kmeans_iters=10,
            threshold_ema_dead_code=cfg.dead_code_threshold,
            commitment_weight=cfg.commitment_weight,
        )
        self.rvq.to(cfg.device)
        self.losses = _Losses(cfg.sample_rate).to(cfg.device)
        self.params = [*self.model.encoder.parameters(), *self.model.decoder.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr, betas=(0.5, 0.9))

    def modules(self) -> dict[str, Any]:
        return {"model": self.model, "rvq": self.rvq, "optimizer": self.optimizer}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, codes ``[batch, frames, codebooks]`` and commitment loss of ``x``."""
        emb = self.model.encoder(x)  # [batch, dim, frames]
        quantized, codes, commit = self.rvq(emb.transpose(1, 2))
        y = self.model.decoder(quantized.transpose(1, 2))[..., : x.shape[-1]]
        return y, codes, commit.sum()

    def train_step(self) -> dict[str, torch.Tensor]:
        assert self.crops is not None, "CodecTrainer(cfg, crops) to train"
        x = self.crops.batch(self.step, self.cfg.batch_size).to(self.cfg.device)
        y, _, commit = self.forward(x)
        l1, spectral = self.losses(y, x)
        loss = 0.1 * l1 + spectral + commit
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 10.0)
        self.optimizer.step()
        return {"l1": l1.detach(), "spectral": spectral.detach(), "commit": commit.detach()}

    @torch.no_grad()
    def evaluate(self, crops: _Crops) -> CodecMetrics:
        self.set_train(False)
        x = crops.batch(2**31 - 1, 16).to(self.cfg.device)  # a batch training never draws
        y, codes, _ = self.forward(x)
        l1, spectral = self.losses(y, x)
        usage = [
            float(codes[..., k].unique().numel() / self.cfg.codebook_size) for k in range(self.cfg.codebooks)
        ]
        return CodecMetrics(
            steps=self.step,
            l1=float(l1),
            stft=float(spectral),
            codebook_usage=usage,
            wall_seconds=self.elapsed,
            history=self.history,
        )

    @torch.no_grad()
    def export(self) -> Any:
        """The ``EncodecModel`` with the learned codebooks in its own quantizer."""
        layers: Any = zip(self.model.quantizer.layers, self.rvq.layers, strict=True)
        for layer, learned in layers:
            book, ours = layer.codebook, learned._codebook
            book.embed.copy_(ours.embed[0])
            book.embed_avg.copy_(ours.embed_avg[0])
            book.cluster_size.copy_(ours.cluster_size[0])
            book.inited.fill_(1)
        return self.model.eval()


def train_codec(cfg: CodecTrainConfig) -> CodecMetrics:
    """Train the codec on ``cfg.corpus`` and save it to ``cfg.out`` (``save_pretrained``).

    With ``cfg.resume`` it continues from ``cfg.out/trainer_state.pt`` (the same batches
    follow, so a resumed run ends where an uninterrupted one would; a larger ``steps``
    trains on). Writes config.json and
    model.safetensors (loadable with ``EncodecModel.from_pretrained``) and metrics.json with
    the loss curve, and run.json with the corpus checksum.
    """
    with cfg.recorded("train-codec", cfg.corpus):
        tracks, _ = load_corpus_audio(cfg.corpus, cfg.sample_rate)
        crops = _Crops(tracks, int(cfg.crop_seconds * cfg.sample_rate), cfg.seed)
        cfg.out.mkdir(parents=True, exist_ok=True)
        trainer = CodecTrainer(cfg, crops)
        trainer.run()
        metrics = trainer.evaluate(crops)
        save_pretrained_atomic(cfg.out, trainer.export())
        write_text_atomic(cfg.out / METRICS_FILE, json.dumps(asdict(metrics), indent=2) + "\n")
        return metrics


def save_pretrained_atomic(out: Path, *objects: Any) -> None:
    """``save_pretrained`` of each object into a temporary directory, then rename the files into ``out``.

    A model with its tokenizer lands whole or not at all: nothing half-written to load.
    """
    with tempfile.TemporaryDirectory(prefix=".save-", dir=out) as tmp:
        for obj in objects:
            obj.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            if f.is_dir():
                replace_dir(f, out / f.name)
            else:
                f.replace(out / f.name)
