"""CLAP audio-text similarity (transformers ``ClapModel``), with an embedding cache.

Scores are cosine similarities of L2-normalised embeddings, in [-1, 1]. Audio embeddings
are cached by file content (SHA-256), in memory and optionally on disk, so re-labelling a
run or scoring a new vocabulary never re-encodes a clip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artifact_schemas import FieldError, atomic_path
from sae_core.audio import load_mono
from sae_core.presets.musicgen import word_level_tokenizer


class ClapScorer:
    """A CLAP model with its tokenizer and feature extractor."""

    def __init__(
        self, model: Any, tokenizer: Any, feature_extractor: Any, cache_dir: str | Path | None = None
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._audio: dict[str, np.ndarray] = {}
        self._text: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path_or_id: str, cache_dir: str | Path | None = None) -> ClapScorer:
        """From a directory written by ``save_pretrained`` or a hub id in the local cache."""
        # transformers' model classes take ~2 s to import: loaded where a model is built.
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        try:
            model = ClapModel.from_pretrained(path_or_id)
            tokenizer = AutoTokenizer.from_pretrained(path_or_id)
            features = ClapFeatureExtractor.from_pretrained(path_or_id)
        except OSError as exc:
            raise ValueError(
                f"--clap {path_or_id!r}: cannot load a CLAP checkpoint from it ({exc}); give a directory "
                "written by save_pretrained (e.g. 'sae-core tiny-clap --out DIR') or a cached hub id"
            ) from exc
        return cls(model, tokenizer, features, cache_dir)

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] unit vectors."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text]
        if todo:
            tok = self.tokenizer(todo, return_tensors="pt", padding=True)
            out = self.model.get_text_features(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            )
            emb = _features(out)
            for text, vec in zip(todo, emb, strict=True):
                self._text[text] = vec
        return np.stack([self._text[t] for t in texts])

    @torch.no_grad()
    def embed_audio(self, paths: Sequence[str | Path], batch_size: int = 8) -> np.ndarray:
        """[n, dim] unit vectors of audio files (any rate; resampled to CLAP's)."""
        keys = [_file_key(p) for p in paths]
        todo = [(k, p) for k, p in dict(zip(keys, paths, strict=True)).items() if k not in self._audio]
        todo = [(k, p) for k, p in todo if not self._load_cached(k)]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            waves = [load_mono(p, self.sample_rate) for _, p in chunk]
            inputs = self.feature_extractor(waves, sampling_rate=self.sample_rate, return_tensors="pt")
            emb = _features(self.model.get_audio_features(input_features=inputs["input_features"]))
            for (key, _), vec in zip(chunk, emb, strict=True):
                self._audio[key] = vec
                self._save_cached(key, vec)
        return np.stack([self._audio[k] for k in keys])

    def similarity(self, texts: Sequence[str], paths: Sequence[str | Path]) -> np.ndarray:
        """[len(texts), len(paths)] cosine similarities."""
        return self.embed_text(texts) @ self.embed_audio(paths).T

    def _load_cached(self, key: str) -> bool:
        if self.cache_dir is None or not (self.cache_dir / f"{key}.npy").is_file():
            return False
        self._audio[key] = np.load(self.cache_dir / f"{key}.npy")
        return True

    def _save_cached(self, key: str, vec: np.ndarray) -> None:
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.cache_dir / f"{key}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, vec)


def _features(out: Any) -> np.ndarray:
    # transformers >= 5 returns an output object whose pooler_output is the normalised
    # projection; older versions return the projected tensor itself.
    emb = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(emb.float(), dim=-1).numpy()


def _file_key(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- tiny preset

_TINY_TEXT = (
    "a an the of with and in slow medium fast tempo sparse dense low mid high register piano organ pluck "
    "strings bell flute drums drum quiet loud major minor key melody bright dark percussive tonal rock jazz "
    "pop electronic ambient classical happy sad calm energetic guitar bass synth voice beat"
)
_TINY_WORDS = sorted(set(_TINY_TEXT.split()))


@dataclass(frozen=True)
class ClapFrontEnd:
    """What a CLAP hears: the feature extractor's log-mel settings and HTSAT's input geometry.

    The defaults are the real checkpoints' (48 kHz, 64 slaney mel bins over 0-14 kHz,
    10 ms hops, a 256 x 256 spectrogram image in 4 x 4 patches). HTSAT folds the
    ``[frames, num_mel_bins]`` spectrogram into a ``spec_size`` square: ``spec_size //
    num_mel_bins`` slices of time stacked along frequency, so the frames of a clip must fit
    in ``spec_size * (spec_size // num_mel_bins)`` (fewer are stretched to it).
    """

    sample_rate: int = 48000
    fft_window_size: int = 1024
    hop_length: int = 480
    num_mel_bins: int = 64
    frequency_min: float = 0.0
    frequency_max: float = 14000.0
    spec_size: int = 256
    patch_size: int = 4
    max_length_s: int = 10

    def __post_init__(self) -> None:
        for name in ("sample_rate", "fft_window_size", "hop_length", "num_mel_bins", "max_length_s"):
            if getattr(self, name) < 1:
                raise FieldError(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.frequency_min < self.frequency_max:
            raise FieldError(
                "frequency_min",
                f"must be >= 0 and below {{other}} ({self.frequency_max:g}), got {self.frequency_min:g}",
                other="frequency_max",
            )
        if self.frequency_max > self.sample_rate / 2:
            raise FieldError(
                "frequency_max",
                f"must be <= half the {{other}} ({self.sample_rate / 2:g}), got {self.frequency_max:g}",
                other="sample_rate",
            )
        if self.spec_size % self.num_mel_bins:
            raise FieldError(
                "spec_size",
                f"must be a multiple of {{other}} ({self.num_mel_bins}), got {self.spec_size}",
                other="num_mel_bins",
            )
        if self.patch_size < 1 or self.spec_size % (2 * self.patch_size):
            raise FieldError(
                "patch_size", f"must divide spec_size / 2 ({self.spec_size // 2}), got {self.patch_size}"
            )
        room = self.spec_size * (self.spec_size // self.num_mel_bins)
        if self.frames > room:
            raise FieldError(
                "hop_length",
                f"a {self.max_length_s} s clip makes {self.frames} frames at {self.hop_length}, more "
                f"than the {room} that spec_size {self.spec_size} holds with {self.num_mel_bins} mel bins",
            )

    @property
    def frames(self) -> int:
        """Spectrogram frames of one ``max_length_s`` window."""
        return self.max_length_s * self.sample_rate // self.hop_length + 1


def clap_parts(
    vocab: list[str],
    audio_hidden_size: int,
    text_hidden_size: int,
    projection_dim: int,
    seed: int,
    front_end: ClapFrontEnd | None = None,
) -> tuple[Any, Any, Any]:
    """A randomly initialised ``ClapModel`` with the real shape conventions, its word
    tokenizer over ``vocab`` and the real feature extractor set to ``front_end`` (default:
    the real checkpoints' 48 kHz, 64 mel bins, 10 s).

    The tiny random preset and the trained mini CLAP (sae_core.mini.clap) both start here.
    """
    # transformers' model classes take ~2 s to import: loaded where a model is built.
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    fe = front_end if front_end is not None else ClapFrontEnd()
    text = ClapTextConfig(
        vocab_size=len(vocab),
        hidden_size=text_hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * text_hidden_size,
        projection_dim=projection_dim,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    audio = ClapAudioConfig(
        window_size=8,
        num_mel_bins=fe.num_mel_bins,
        spec_size=fe.spec_size,
        hidden_size=2 * audio_hidden_size,  # two Swin stages: the width doubles once
        projection_dim=projection_dim,
        depths=[1, 1],
        num_attention_heads=[2, 4],
        patch_embeds_hidden_size=audio_hidden_size,
        num_hidden_layers=2,
        patch_stride=[fe.patch_size, fe.patch_size],
        patch_size=fe.patch_size,
    )
    torch.manual_seed(seed)
    config = ClapConfig(
        text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=projection_dim
    )
    model = ClapModel(config)
    tokenizer = word_level_tokenizer(vocab, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    # rand_trunc: clips of up to max_length_s are repeat-padded, never randomly cropped ->
    # deterministic. Its mel filters are slaney's: linear below 1 kHz, logarithmic above.
    features = ClapFeatureExtractor(
        feature_size=fe.num_mel_bins,
        sampling_rate=fe.sample_rate,
        hop_length=fe.hop_length,
        fft_window_size=fe.fft_window_size,
        frequency_min=fe.frequency_min,
        frequency_max=fe.frequency_max,
        max_length_s=fe.max_length_s,
        truncation="rand_trunc",
    )
    return model, tokenizer, features


def build_tiny_clap(out: str | Path, seed: int = 0) -> Path:
    """A ~0.1M-parameter random CLAP (HTSAT audio tower, text tower), saved with save_pretrained.

    Real shape conventions (48 kHz, 64 mel bins, 10 s windows, 1001 frames); random weights.
    """
    out = Path(out)
    vocab = ["<pad>", "<s>", "</s>", "<unk>", *_TINY_WORDS]
    model, tokenizer, features = clap_parts(vocab, 32, 32, 32, seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    features.save_pretrained(out)
    return out
