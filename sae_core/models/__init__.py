"""Music generator adapters behind one interface (``MusicModel``). Imports torch."""

from __future__ import annotations

from artifact_schemas import FieldError
from sae_core.models.base import Captured, Intervention, MusicModel
from sae_core.models.transformers_musicgen import TransformersMusicGen

BACKENDS = ("transformers", "audiocraft")


def paper_layers(n_layers: int) -> list[int]:
    """Layer 2, 25%, 50% and 75% depth, and the second-to-last layer (Singh et al.)."""
    picks = {2, n_layers // 4, n_layers // 2, (3 * n_layers) // 4, n_layers - 2}
    return sorted(layer for layer in picks if 0 <= layer < n_layers)


def load_model(path_or_id: str, backend: str = "transformers", device: str = "cpu") -> MusicModel:
    """Load a music generator from a local directory or hub id with the chosen backend."""
    if backend == "transformers":
        return TransformersMusicGen.load(path_or_id, device=device)
    if backend == "audiocraft":
        from sae_core.models.audiocraft_musicgen import AudiocraftMusicGen

        return AudiocraftMusicGen.load(path_or_id, device=device)
    raise FieldError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")


__all__ = [
    "BACKENDS",
    "Captured",
    "Intervention",
    "MusicModel",
    "TransformersMusicGen",
    "load_model",
    "paper_layers",
]
