"""MusicGen through Meta's ``audiocraft`` (optional; imported only for ``--backend audiocraft``).

Same conventions as the transformers adapter (``docs/models.md``): layer ``l`` is the
output of transformer block ``l``; row ``f`` of a teacher-forced pass is the step at
which frame ``f``'s first codebook is read. Here that step is looked up in the
model's own codebook pattern (``pattern.layout``), so any interleaving audiocraft
offers (delay, parallel, unroll ...) maps to frames correctly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sae_core.models.base import GUIDANCE_SCALE, Intervention, MusicModel


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
            from audiocraft.models import MusicGen  # optional (the audiocraft extra)
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
        from audiocraft.modules.conditioners import ConditioningAttributes  # optional (the audiocraft extra)

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
        guidance_scale: float = GUIDANCE_SCALE,
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
