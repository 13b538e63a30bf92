"""Model adapters, activation extraction, SAE training, feature analysis and steering.

The only package that uses torch. Importing it stays light: torch-backed modules
are imported by the commands that need them, so ``sae-core --help`` is instant.
"""

from sae_core.synth import CorpusTrack, TrackConcepts, synth_corpus

__all__ = ["CorpusTrack", "TrackConcepts", "synth_corpus"]
