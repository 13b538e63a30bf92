"""The audio codec behind a music generator, through one small interface (``Codec``).

MusicGen models audio as the tokens of a codec: ``encode`` turns mono audio into
``[batch, codebooks, frames]`` integer codes, ``decode`` turns codes back into audio.
Two codecs stand behind the interface:

* ``EncodecCodec``: transformers' ``EncodecModel``, the codec of every published
  MusicGen checkpoint (``facebook/musicgen-*``: 32 kHz, 50 frames/s, 4 x 2048).
* ``SpectralCodec``: a codec *fitted* rather than trained (``sae-core fit-codec``):
  STFT log-magnitude frames, a PCA to ``pca_dims``, residual k-means codebooks, and
  Griffin-Lim phase reconstruction on the way back. A convolutional EnCodec trained on
  spectral losses needs tens of thousands of GPU steps before it synthesises pitch
  (docs/models.md); this one fits in minutes on two CPU cores and keeps key, mode,
  tempo and instrument (measured by ``benchmarks/bench_mini_models.py``).

A MusicGen directory says which codec it has: ``codec/codec.json`` inside it names a
fitted codec (loaded by :func:`load_codec`); without it the model's own ``audio_encoder``
(EnCodec) is the codec, as in every real checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import librosa
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from artifact_schemas import FieldError, atomic_path, write_text_atomic
from artifact_schemas.settings import check_settings, setting

CODEC_FILE = "codec.json"
WEIGHTS_FILE = "codec.safetensors"
#: Where a MusicGen directory keeps a fitted codec.
MODEL_CODEC_DIR = "codec"


class Codec(ABC):
    """Mono audio <-> residual codebook tokens at a fixed frame rate."""

    kind: ClassVar[str] = ""

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Audio sample rate (Hz)."""

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Token frames per second."""

    @property
    @abstractmethod
    def num_codebooks(self) -> int:
        """Residual codebooks per frame."""

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Entries per codebook (token values are 0 .. codebook_size - 1)."""

    @abstractmethod
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Codes ``[batch, K, frames]`` (int64) of mono ``audio`` ``[batch, samples]``."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Audio ``[batch, frames * samples_per_frame]`` (float32) of ``codes``."""

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write the codec into ``directory`` so that :func:`load_codec` reads it back."""


# --------------------------------------------------------------------------- EnCodec


class EncodecCodec(Codec):
    """transformers' ``EncodecModel`` (optionally only its first ``num_codebooks`` codebooks)."""

    kind = "encodec"

    def __init__(self, model: Any, num_codebooks: int | None = None) -> None:
        self.model = model.eval()
        config = model.config
        # EnCodec selects codebooks by bandwidth; its largest bandwidth uses all of them.
        self._bandwidth = float(max(config.target_bandwidths))
        total = round(1000 * self._bandwidth / (config.frame_rate * math.log2(config.codebook_size)))
        self._k = num_codebooks or total

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.config.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return self._k

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.codebook_size)

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        param = next(self.model.parameters())
        x = audio.to(param.device, dtype=param.dtype)
        out = self.model.encode(x[:, None, :], bandwidth=self._bandwidth)
        # [chunks=1, batch, codebooks, frames]; a decoder may use only the first K.
        return out.audio_codes[0, :, : self._k]

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        out = self.model.decode(codes[None].to(device), [None])
        return out.audio_values[:, 0].float()

    def save(self, directory: str | Path) -> None:
        self.model.save_pretrained(directory)


# --------------------------------------------------------------------------- fitted spectral codec


@dataclass(frozen=True)
class SpectralCodecConfig:
    """The fixed settings of a fitted spectral codec (``codec.json``)."""

    sample_rate: int = setting(16000, ge=1)
    """Audio rate of the codec (Hz)."""
    n_fft: int = setting(1024, ge=1)
    """STFT size."""
    hop_length: int = setting(320, ge=1)
    """STFT hop: sample_rate / hop frames per second."""
    pca_dims: int = setting(128, ge=1)
    """PCA dimensions kept of the log-magnitude frames."""
    codebooks: int = setting(4, ge=1)
    """Residual codebooks (MusicGen: 4)."""
    codebook_size: int = setting(1024, ge=1)
    """Entries per codebook."""
    griffin_lim_iters: int = setting(32, ge=0)
    """Phase reconstruction iterations."""
    log_floor: float = setting(1e-4, gt=0)
    """Added to magnitudes before the log: silence sits at log(1e-4), not at -inf."""

    def __post_init__(self) -> None:
        check_settings(self)
        if self.hop_length > self.n_fft:
            raise FieldError("hop_length", f"at most n_fft ({self.n_fft}), got {self.hop_length}")
        if self.pca_dims > self.n_fft // 2 + 1:
            raise FieldError(
                "pca_dims", f"at most n_fft // 2 + 1 = {self.n_fft // 2 + 1}, got {self.pca_dims}"
            )
        if self.sample_rate % self.hop_length:
            raise FieldError(
                "hop_length",
                f"must divide sample_rate ({self.sample_rate}) for a whole number of frames per second, "
                f"got {self.hop_length}",
            )


class SpectralCodec(Codec):
    """Log-magnitude STFT -> PCA -> residual k-means codes; decoded by Griffin-Lim."""

    kind = "spectral"

    def __init__(
        self,
        config: SpectralCodecConfig,
        mean: torch.Tensor,
        components: torch.Tensor,
        codebooks: torch.Tensor,
        facts: dict[str, Any] | None = None,
    ) -> None:
        bins = config.n_fft // 2 + 1
        expect = {
            "mean": (mean, (bins,)),
            "components": (components, (config.pca_dims, bins)),
            "codebooks": (codebooks, (config.codebooks, config.codebook_size, config.pca_dims)),
        }
        for name, (tensor, shape) in expect.items():
            if tuple(tensor.shape) != shape:
                raise FieldError(name, f"shape {tuple(tensor.shape)} does not match codec.json's {shape}")
        self.config = config
        self.mean = mean.float()
        self.components = components.float()
        self.codebooks = codebooks.float()
        self.facts = dict(facts or {})
        self._window = torch.hann_window(config.n_fft)

    # -- facts -----------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.config.codebooks

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    # -- the transform ---------------------------------------------------------------

    def log_magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, bins]`` log-magnitude frames; frame ``f`` is centred on sample ``f * hop``.

        ``frames = ceil(samples / hop)``, as EnCodec counts them.
        """
        cfg = self.config
        audio = torch.as_tensor(audio, dtype=torch.float32)
        n = math.ceil(audio.shape[-1] / cfg.hop_length)
        # Zero-pad to whole frames, and to more than n_fft / 2 samples: torch.stft's
        # reflection padding (what the shipped codec was fitted with) needs that many.
        length = max(n * cfg.hop_length, cfg.n_fft // 2 + 1)
        padded = torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))
        spec = torch.stft(
            padded, cfg.n_fft, cfg.hop_length, window=self._window, center=True, return_complex=True
        )  # [batch, bins, n + 1]
        return torch.log(spec.abs()[..., :n] + cfg.log_floor).transpose(1, 2)

    def project(self, log_mag: torch.Tensor) -> torch.Tensor:
        """PCA coordinates ``[..., pca_dims]`` of log-magnitude frames."""
        return (log_mag - self.mean) @ self.components.T

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        audio = torch.as_tensor(audio)
        if audio.ndim != 2:
            raise FieldError("audio", f"expected mono [batch, samples], got shape {tuple(audio.shape)}")
        if not torch.is_floating_point(audio):
            raise FieldError("audio", f"expected float samples in [-1, 1], got {audio.dtype}")
        if not bool(torch.isfinite(audio).all()):
            raise FieldError("audio", "holds NaN or infinite samples")
        residual = self.project(self.log_magnitude(audio.detach().cpu()))  # [batch, frames, D]
        codes = []
        for book in self.codebooks:  # residual quantisation, nearest entry per stage
            idx = nearest(residual, book)
            residual = residual - book[idx]
            codes.append(idx)
        return torch.stack(codes, dim=1)  # [batch, K, frames]

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """The PCA coordinates ``[batch, frames, pca_dims]`` that ``codes`` stand for."""
        codes = codes.detach().cpu().long()
        if codes.ndim != 3 or codes.shape[1] != self.config.codebooks:
            raise FieldError(
                "codes", f"expected [batch, {self.config.codebooks}, frames], got {tuple(codes.shape)}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise FieldError("codes", f"token values must lie in 0..{self.config.codebook_size - 1}")
        out = torch.zeros(*codes[:, 0].shape, self.config.pca_dims)
        for k, book in enumerate(self.codebooks):
            out += book[codes[:, k]]
        return out

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:

        cfg = self.config
        log_mag = self.embed(codes) @ self.components + self.mean  # [batch, frames, bins]
        magnitude = (torch.exp(log_mag) - cfg.log_floor).clamp_min(0).transpose(1, 2).numpy()
        n = magnitude.shape[-1]
        if n == 0:
            return torch.zeros(magnitude.shape[0], 0)
        # A centred STFT of n * hop samples has n + 1 frames: repeat the last for the tail.
        magnitude = np.concatenate([magnitude, magnitude[..., -1:]], axis=-1)
        # Griffin-Lim with librosa's momentum (Perraudin et al. 2013) from a fixed random
        # phase: the same codes always give the same audio.
        audio = librosa.griffinlim(
            magnitude,
            n_iter=cfg.griffin_lim_iters,
            hop_length=cfg.hop_length,
            n_fft=cfg.n_fft,
            window="hann",
            center=True,
            length=n * cfg.hop_length,
            random_state=0,
        )
        return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))

    # -- files -----------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """``codec.json`` and ``codec.safetensors``, each written whole or not at all."""

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, **asdict(self.config), **({"facts": self.facts} if self.facts else {})}
        tensors = {"mean": self.mean, "components": self.components, "codebooks": self.codebooks}
        # Weights first: a codec.json never lands beside weights it does not describe
        # unless a rerun with other settings dies between the two renames.
        with atomic_path(out / WEIGHTS_FILE) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        write_text_atomic(out / CODEC_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> SpectralCodec:

        d = Path(directory)
        meta = json.loads((d / CODEC_FILE).read_text())
        if not isinstance(meta, dict):
            raise FieldError("codec", f"{d / CODEC_FILE}: expected a JSON object")
        facts = meta.pop("facts", {})
        meta.pop("kind", None)
        fields = SpectralCodecConfig.__dataclass_fields__
        unknown = sorted(set(meta) - set(fields))
        if unknown:
            raise FieldError("codec", f"{d / CODEC_FILE}: unknown fields {', '.join(unknown)}")
        for name, value in meta.items():
            kind = float if name == "log_floor" else int
            if not isinstance(value, kind) or isinstance(value, bool):
                raise FieldError(
                    "codec", f"{d / CODEC_FILE}: {name} must be a {kind.__name__}, got {value!r}"
                )
        try:
            tensors = load_file(str(d / WEIGHTS_FILE))
        except Exception as exc:  # OSError, or safetensors' own error types
            raise FieldError("codec", f"{d / WEIGHTS_FILE}: cannot read the codec's weights ({exc})") from exc
        missing = sorted({"mean", "components", "codebooks"} - set(tensors))
        if missing:
            raise FieldError("codec", f"{d / WEIGHTS_FILE}: no tensor {', '.join(missing)}")
        if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
            raise FieldError("codec", f"{d / WEIGHTS_FILE}: the weights hold NaN or infinite values")
        try:
            return cls(
                SpectralCodecConfig(**meta),
                tensors["mean"],
                tensors["components"],
                tensors["codebooks"],
                facts=facts,
            )
        except FieldError as exc:
            raise FieldError("codec", f"{d}: {exc}") from exc

    def encodec_config(self) -> Any:
        """A minimal ``EncodecConfig`` with this codec's rate, frames and codebooks.

        ``MusicgenForConditionalGeneration`` holds an ``audio_encoder`` whose config gives
        the sample rate, frame rate and codebooks; a model over this codec carries a small
        placeholder EnCodec with these facts. Its weights are never used: the adapter
        encodes and decodes with this codec (``codec/`` in the model directory).
        """
        # transformers' model classes take ~2 s to import: loaded where a model is built.
        from transformers import EncodecConfig

        cfg = self.config
        return EncodecConfig(
            sampling_rate=cfg.sample_rate,
            audio_channels=1,
            upsampling_ratios=_factor(cfg.hop_length),
            target_bandwidths=[cfg.codebooks * self.frame_rate * math.log2(cfg.codebook_size) / 1000],
            codebook_size=cfg.codebook_size,
            num_lstm_layers=1,
            normalize=False,
            num_filters=PLACEHOLDER["num_filters"],
            hidden_size=PLACEHOLDER["hidden_size"],
            codebook_dim=PLACEHOLDER["codebook_dim"],
        )


#: The placeholder EnCodec's own sizes (no real EnCodec is this small: 1 filter gives
#: zero-size convolutions, so 2): how a model directory that lost its codec/ is told apart.
PLACEHOLDER = {"num_filters": 2, "hidden_size": 8, "codebook_dim": 8}


def is_placeholder(encodec_config: Any) -> bool:
    """Whether an ``EncodecConfig`` is the placeholder of a model over a fitted codec."""
    return all(getattr(encodec_config, k, None) == v for k, v in PLACEHOLDER.items())


def nearest(x: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    """Index of the nearest ``book`` row (Euclidean) for every row of ``x`` ``[..., D]``."""
    flat = x.reshape(-1, x.shape[-1])
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every c.
    scores = flat @ book.T * -2 + (book * book).sum(dim=1)
    return scores.argmin(dim=1).reshape(x.shape[:-1])


def _factor(hop: int) -> list[int]:
    """``hop`` as a product of factors <= 8, largest first (EnCodec's upsampling ratios)."""
    out, rest = [], hop
    while rest > 1:
        f = next((f for f in range(8, 1, -1) if rest % f == 0), rest)
        out.append(f)
        rest //= f
    return out or [1]


# --------------------------------------------------------------------------- loading


def is_codec_dir(directory: str | Path) -> bool:
    """Whether ``directory`` holds a codec :func:`load_codec` reads."""
    d = Path(directory)
    if (d / CODEC_FILE).is_file():
        return True
    try:
        return json.loads((d / "config.json").read_text()).get("model_type") == "encodec"
    except (OSError, ValueError):
        return False


def load_codec(directory: str | Path, device: str = "cpu") -> Codec:
    """A fitted codec (``codec.json``) or a saved ``EncodecModel`` (``config.json``) from ``directory``."""
    d = Path(directory)
    if (d / CODEC_FILE).is_file():
        try:
            kind = json.loads((d / CODEC_FILE).read_text()).get("kind")
        except ValueError as exc:
            raise FieldError("codec", f"{d / CODEC_FILE}: not JSON ({exc})") from exc
        if kind != SpectralCodec.kind:
            raise FieldError("codec", f"{d / CODEC_FILE}: unknown codec kind {kind!r} (known: spectral)")
        return SpectralCodec.load(d)
    if is_codec_dir(d):
        # transformers' model classes take ~2 s to import: loaded where a model is built.
        from transformers import EncodecModel

        return EncodecCodec(EncodecModel.from_pretrained(d).to(device))  # type: ignore[arg-type]
    raise FieldError(
        "codec",
        f"{d}: no codec there (a fitted codec has {CODEC_FILE}: 'sae-core fit-codec'; an EnCodec has "
        "a config.json with model_type 'encodec': 'sae-core train-codec')",
    )


def replace_dir(src: Path, dest: Path) -> None:
    """Move directory ``src`` to ``dest``, replacing what was there (same file system)."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dest.replace(old)
        src.replace(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.replace(dest)
