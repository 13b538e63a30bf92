"""The tiny random MusicGen preset for the audiocraft backend
(``sae-core tiny-model --backend audiocraft``), saved as audiocraft checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sae_core.presets.calibration import calibration_audio


def _tiny_configs() -> tuple[dict[str, Any], dict[str, Any]]:
    """Hydra-style configs (as audiocraft checkpoints store them) of a tiny MusicGen."""
    device = {"device": "cpu", "dtype": "float32"}
    codec = {
        **device,
        "compression_model": "encodec",
        "encodec": {
            "autoencoder": "seanet",
            "quantizer": "rvq",
            "sample_rate": 32000,
            "channels": 1,
            "causal": False,
            "renormalize": False,
        },
        "seanet": {
            "dimension": 32,
            "channels": 1,
            "n_filters": 4,
            "n_residual_layers": 1,
            "ratios": [8, 5, 4, 4],
            "encoder": {},
            "decoder": {},
        },
        "rvq": {"n_q": 4, "bins": 256, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 20},
    }
    lm = {
        **device,
        "lm_model": "transformer_lm",
        "transformer_lm": {
            "n_q": 4,
            "card": 256,
            "dim": 64,
            "num_heads": 4,
            "num_layers": 4,
            "hidden_scale": 4,
            "norm_first": True,
            "causal": True,
            "custom": True,
            "cross_attention": True,
            "bias_proj": False,
        },
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [0, 1, 2, 3]}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": 3.0},
        "fuser": {
            "cross_attention_pos_emb": False,
            "cross_attention_pos_emb_scale": 1,
            "sum": [],
            "prepend": [],
            "cross": ["description"],
            "input_interpolate": [],
        },
        "conditioners": {
            "description": {"model": "lut", "lut": {"n_bins": 256, "dim": 32, "tokenizer": "noop"}}
        },
        "dataset": {"segment_duration": 30},
    }
    return codec, lm


def build_tiny_audiocraft(out: str | Path, seed: int = 0) -> Path:
    """Build a tiny random audiocraft MusicGen and save it as audiocraft checkpoints.

    ``state_dict.bin`` and ``compression_state_dict.bin`` hold ``xp.cfg`` + ``best_state``
    like the released checkpoints, so :meth:`AudiocraftMusicGen.load` reads them through
    ``MusicGen.get_pretrained``, the path real weights take. As in the transformers tiny
    preset, the codebooks are k-means-initialised on a music-like calibration signal and
    the output heads are scaled so that interventions change samples.
    """
    # audiocraft is optional (docs/models.md): imported only when its preset is built.
    from audiocraft.models import builders  # optional (the audiocraft extra)
    from omegaconf import OmegaConf  # comes with the optional audiocraft extra

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    codec_cfg, lm_cfg = _tiny_configs()
    torch.manual_seed(seed)
    codec = builders.get_compression_model(OmegaConf.create(codec_cfg))
    codec.train()
    with torch.no_grad():
        # audiocraft's RVQ runs k-means on its first training batch (audiocraft's own debug
        # model does the same with random input).
        embeddings = codec.encoder(calibration_audio(32000, seed)[None, None, :])
        codec.quantizer(embeddings, codec.frame_rate)
    codec.eval()
    lm = builders.get_lm_model(OmegaConf.create(lm_cfg))
    with torch.no_grad():
        for linear in lm.linears:
            linear.weight.mul_(25.0)
    torch.save({"xp.cfg": codec_cfg, "best_state": codec.state_dict()}, out / "compression_state_dict.bin")
    torch.save({"xp.cfg": lm_cfg, "best_state": lm.state_dict()}, out / "state_dict.bin")
    return out
