"""Sparse autoencoders: the coder, its config, data sources and the trainer (imports torch)."""

from sae_core.sae.config import ACTIVATIONS, SaeConfig, TrainConfig
from sae_core.sae.data import ActivationSource, InMemoryActivations, ShardedActivations
from sae_core.sae.sparse_coder import EncoderOutput, ForwardOutput, SparseCoder, sparse_decode
from sae_core.sae.stage import TrainSaeConfig, metrics_table, train_sae
from sae_core.sae.trainer import Trainer, TrainMetrics

__all__ = [
    "ACTIVATIONS",
    "ActivationSource",
    "EncoderOutput",
    "ForwardOutput",
    "InMemoryActivations",
    "SaeConfig",
    "ShardedActivations",
    "SparseCoder",
    "TrainConfig",
    "TrainMetrics",
    "TrainSaeConfig",
    "Trainer",
    "metrics_table",
    "sparse_decode",
    "train_sae",
]
