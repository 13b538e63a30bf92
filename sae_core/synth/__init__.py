"""Synthetic music corpus with ground-truth concepts (numpy/scipy only, no torch)."""

from sae_core.synth.corpus import (
    CorpusTrack,
    SynthConfig,
    draw_concepts,
    render_track,
    synth_corpus,
    write_corpus,
)
from sae_core.synth.score import TrackConcepts

__all__ = [
    "CorpusTrack",
    "SynthConfig",
    "TrackConcepts",
    "draw_concepts",
    "render_track",
    "synth_corpus",
    "write_corpus",
]
