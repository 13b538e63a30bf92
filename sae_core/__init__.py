"""Model adapters, activation extraction, SAE training, feature analysis and steering.

The only package that uses torch. Importing the package does not import torch; the
torch-backed modules are imported where they are used. The command line does import
them: each command's options are built from its stage's config dataclass, which lives
beside the stage's code, so ``sae-core --help`` takes a few seconds (torch's import).
"""

from sae_core.synth import CorpusTrack, TrackConcepts, synth_corpus

__all__ = ["CorpusTrack", "TrackConcepts", "synth_corpus"]
