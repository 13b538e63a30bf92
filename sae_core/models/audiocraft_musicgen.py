"""MusicGen through Meta's ``audiocraft`` (optional; imported only for ``--backend audiocraft``).

Same conventions as the transformers adapter (``docs/models.md``): layer ``l`` is the
output of transformer block ``l``; row ``f`` of a teacher-forced pass is the step at
which frame ``f``'s first codebook is read. Here that step is looked up in the
model's own codebook pattern (``pattern.layout``), so any interleaving audiocraft
offers (delay, parallel, unroll ...) maps to frames correctly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_core.models.base import Intervention, MusicModel
from sae_core.models.tiny_presets import calibration_audio


class AudiocraftMusicGen(MusicModel):
    """An ``audiocraft.models.MusicGen`` (LM + compression model)."""

    backend = "audiocraft"

    def __init__(self, musicgen: Any, name: str = "") -> None:
        self.musicgen = musicgen
        self.lm = musicgen.lm.eval()
        self.codec = musicgen.compression_model.eval()
        self.name = name
        # Prefix positions (conditions fused by "prepend") come before the code steps.
        self._prepended = len(self.lm.fuser.fuse2cond.get("prepend", []))

    @classmethod
    def load(cls, path_or_id: str, device: str = "cpu") -> AudiocraftMusicGen:
        """A directory with ``state_dict.bin`` + ``compression_state_dict.bin``, or a hub id."""
        try:
            from audiocraft.models import MusicGen
        except ImportError as exc:
            raise ValueError(
                f"--backend audiocraft needs the audiocraft package ({exc}); see docs/models.md"
            ) from exc
        try:
            musicgen = MusicGen.get_pretrained(path_or_id, device=device)
        except (OSError, KeyError, AssertionError) as exc:
            raise ValueError(
                f"--model {path_or_id!r}: cannot load an audiocraft MusicGen from it ({exc}); expected "
                "a directory with state_dict.bin and compression_state_dict.bin, or a cached hub id"
            ) from exc
        return cls(musicgen, name=str(path_or_id))

    @property
    def d_model(self) -> int:
        return int(self.lm.dim)

    @property
    def n_layers(self) -> int:
        return len(self.lm.transformer.layers)

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.codec.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return int(self.lm.num_codebooks)

    def decoder_layers(self) -> Sequence[nn.Module]:
        return self.lm.transformer.layers

    @torch.inference_mode()
    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        codes, _scale = self.codec.encode(audio.to(self.device)[:, None, :])
        return codes[:, : self.num_codebooks]

    def _conditions(self, texts: Sequence[str] | None, batch: int) -> list[Any]:
        from audiocraft.modules.conditioners import ConditioningAttributes

        texts = list(texts) if texts is not None else [""] * batch
        return [ConditioningAttributes(text={"description": t or None}) for t in texts]

    def _teacher_forced(self, codes: torch.Tensor, texts: Sequence[str] | None) -> None:
        pattern = self.lm.pattern_provider.get_pattern(codes.shape[-1])
        sequence, _, _ = pattern.build_pattern_sequence(
            codes.to(self.device).contiguous(), self.lm.special_token_id, keep_only_valid_steps=False
        )
        self.lm(sequence, self._conditions(texts, codes.shape[0]))

    def _positions_for_frames(self, n_frames: int) -> slice | torch.Tensor:
        pattern = self.lm.pattern_provider.get_pattern(n_frames)
        step_of_frame = {}
        for step, coords in enumerate(pattern.layout):
            for coord in coords:
                if coord.q == 0 and coord.t < n_frames:
                    step_of_frame[coord.t] = step
        steps = [step_of_frame[f] + self._prepended for f in range(n_frames)]
        if steps == list(range(steps[0], steps[0] + n_frames)):
            return slice(steps[0], steps[0] + n_frames)
        return torch.tensor(steps)

    @torch.inference_mode()
    def generate_codes(
        self,
        texts: Sequence[str],
        seconds: float,
        seed: int,
        interventions: Sequence[Intervention] = (),
        guidance_scale: float = 3.0,
        temperature: float = 1.0,
        top_k: int = 250,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled tokens [batch, K, frames] and audio [batch, samples].

        audiocraft always runs the conditional and null-condition copies stacked on the
        batch axis (conditional first), so ``apply_to="conditional"`` is meaningful even
        at guidance 1.
        """
        self.musicgen.set_generation_params(
            use_sampling=True, top_k=top_k, temperature=temperature, duration=seconds, cfg_coef=guidance_scale
        )
        torch.manual_seed(seed)
        with self.hooks(interventions=interventions):
            audio, codes = self.musicgen.generate(list(texts), return_tokens=True)
        return codes.cpu(), audio[:, 0].float().cpu()


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
    from audiocraft.models import builders
    from omegaconf import OmegaConf

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
