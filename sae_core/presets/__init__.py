"""Factories of MusicGen models with random weights, apart from the adapters that load
them (``sae_core.models``): ``musicgen`` (the config builder, model and tokenizer they
share), ``tiny`` (a ~0.6M-parameter model with the real conventions; its codebooks drawn
from the synthetic corpus's instruments) and ``real`` (the published architectures)."""
