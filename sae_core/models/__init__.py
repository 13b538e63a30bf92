"""Music generator adapters behind one interface (``MusicModel``). Imports torch."""

from __future__ import annotations

from artifact_schemas import FieldError
from sae_core.models.audiocraft_musicgen import AudiocraftMusicGen
from sae_core.models.base import Captured, Intervention, MusicModel
from sae_core.models.transformers_musicgen import TransformersMusicGen

BACKENDS = ("transformers", "audiocraft")


def load_model(path_or_id: str, backend: str = "transformers", device: str = "cpu") -> MusicModel:
    """Load a music generator from a local directory or hub id with the chosen backend."""
    if backend == "transformers":
        return TransformersMusicGen.load(path_or_id, device=device)
    if backend == "audiocraft":
        return AudiocraftMusicGen.load(path_or_id, device=device)
    raise FieldError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")


__all__ = [
    "BACKENDS",
    "Captured",
    "Intervention",
    "MusicModel",
    "TransformersMusicGen",
    "load_model",
]
