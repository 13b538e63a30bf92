"""What extraction, steering and generation need from a music generator.

A ``MusicModel`` hides which library implements the model (Hugging Face
``transformers`` or Meta's ``audiocraft``). Everything is expressed per *audio frame*:
residual-stream activations come back as ``[batch, frames, d_model]`` with row ``f``
belonging to frame ``f`` (time ``f / frame_rate``), whatever codebook interleaving
the model uses internally (see ``docs/models.md``).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

ApplyTo = Literal["both", "conditional"]


#: MusicGen's classifier-free guidance scale (its generation_config's): every generation
#: that does not choose its own uses it.
GUIDANCE_SCALE = 3.0


@dataclass(frozen=True)
class Intervention:
    """Add ``delta`` (``[d_model]``, in the model's units) to the residual stream after block ``layer``.

    ``apply_to`` matters with classifier-free guidance, where each step runs a
    conditional and an unconditional copy of the batch: ``both`` steers the two alike
    (the guided difference then carries no steering), ``conditional`` steers only the
    prompted copy.
    """

    layer: int
    delta: torch.Tensor  # [d_model]
    apply_to: ApplyTo = "both"


@dataclass
class Captured:
    """Residual-stream outputs recorded by :meth:`MusicModel.hooks`, per layer."""

    outputs: dict[int, list[torch.Tensor]] = field(default_factory=dict)

    def stacked(self, layer: int) -> torch.Tensor:
        """All recorded outputs of ``layer`` joined along the position axis."""
        return torch.cat(self.outputs[layer], dim=1)


class MusicModel(ABC):
    """A text-to-music generator over audio-codec tokens (MusicGen and its kin)."""

    #: the library behind the adapter, e.g. "transformers"
    backend: str = ""

    @property
    @abstractmethod
    def d_model(self) -> int:
        """Width of the residual stream."""

    @property
    @abstractmethod
    def n_layers(self) -> int:
        """Number of transformer blocks in the token decoder."""

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Audio sample rate of the codec (Hz)."""

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Codec frames per second (one decoder position per frame)."""

    @property
    @abstractmethod
    def num_codebooks(self) -> int:
        """Residual-quantizer codebooks per frame."""

    @property
    def device(self) -> torch.device:
        return next(self.decoder_layers()[0].parameters()).device

    @abstractmethod
    def decoder_layers(self) -> Sequence[nn.Module]:
        """The transformer blocks whose outputs are the residual stream, in order."""

    @abstractmethod
    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Codec tokens of mono ``audio`` [batch, samples] at ``sample_rate``: [batch, K, frames]."""

    @abstractmethod
    def _teacher_forced(self, codes: torch.Tensor, texts: Sequence[str] | None) -> None:
        """Run the decoder on ``codes`` [batch, K, frames] (hooks record the residuals)."""

    @abstractmethod
    def _positions_for_frames(self, n_frames: int) -> slice | torch.Tensor:
        """Which decoder positions of a teacher-forced pass correspond to frames 0..n-1."""

    @abstractmethod
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
        """Sampled tokens [batch, K, frames] and their audio [batch, samples] for ``texts``
        (empty string = unconditional).

        The same ``seed`` with and without interventions gives the same random draws, so
        a steered generation differs from its baseline only by the intervention.
        """

    def generate(
        self,
        texts: Sequence[str],
        seconds: float,
        seed: int,
        interventions: Sequence[Intervention] = (),
        guidance_scale: float = GUIDANCE_SCALE,
        temperature: float = 1.0,
        top_k: int = 250,
    ) -> torch.Tensor:
        """Sampled audio [batch, samples]; see :meth:`generate_codes`."""
        return self.generate_codes(texts, seconds, seed, interventions, guidance_scale, temperature, top_k)[1]

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} does not exist: the model has layers 0..{self.n_layers - 1}")

    @contextlib.contextmanager
    def hooks(
        self,
        capture: Sequence[int] = (),
        interventions: Sequence[Intervention] = (),
    ) -> Iterator[Captured]:
        """Install forward hooks for the duration of the block, and always remove them.

        ``capture``: layers whose block outputs are recorded (detached, after any
        intervention on that layer). ``interventions``: deltas added to block outputs.
        """
        layers = self.decoder_layers()
        captured = Captured({layer: [] for layer in capture})
        by_layer: dict[int, list[Intervention]] = {}
        for iv in interventions:
            self._check_layer(iv.layer)
            if iv.delta.shape != (self.d_model,):
                raise ValueError(
                    f"intervention delta has shape {tuple(iv.delta.shape)}, expected ({self.d_model},)"
                )
            by_layer.setdefault(iv.layer, []).append(iv)
        for layer in capture:
            self._check_layer(layer)
        handles = []
        for layer in sorted(set(capture) | set(by_layer)):
            handles.append(
                layers[layer].register_forward_hook(
                    _make_hook(by_layer.get(layer, []), captured.outputs.get(layer))
                )
            )
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    @torch.inference_mode()
    def residuals(
        self,
        codes: torch.Tensor,
        layers: Sequence[int],
        texts: Sequence[str] | None = None,
    ) -> dict[int, torch.Tensor]:
        """Teacher-forced residual stream after each block in ``layers``: [batch, frames, d_model].

        Row ``f`` is the decoder position at which frame ``f``'s first (coarsest) codebook
        token is read; ``texts`` condition the decoder (None or "" = unconditional).
        """
        n_frames = codes.shape[-1]
        with self.hooks(capture=layers) as captured:
            self._teacher_forced(codes, texts)
        keep = self._positions_for_frames(n_frames)
        return {layer: captured.stacked(layer)[:, keep].float() for layer in layers}


def _make_hook(
    interventions: list[Intervention], store: list[torch.Tensor] | None
) -> Callable[[nn.Module, object, object], object]:
    # Each delta in the hidden state's dtype and device, converted once rather than at every step.
    deltas: dict[tuple[torch.dtype, torch.device], list[tuple[torch.Tensor, ApplyTo]]] = {}

    def hook(module: nn.Module, args: object, output: object) -> object:
        # Decoder blocks return a tensor (transformers >= 5) or a tuple whose first item
        # is the hidden state (older transformers, audiocraft).
        hidden = output[0] if isinstance(output, tuple) else output
        assert isinstance(hidden, torch.Tensor)
        if interventions:
            key = (hidden.dtype, hidden.device)
            if key not in deltas:
                deltas[key] = [
                    (iv.delta.to(device=hidden.device, dtype=hidden.dtype), iv.apply_to)
                    for iv in interventions
                ]
            for delta, apply_to in deltas[key]:
                if apply_to == "both":
                    hidden = hidden + delta
                else:
                    # Classifier-free guidance stacks [conditional; unconditional] on the batch axis.
                    half = hidden.shape[0] // 2
                    hidden = torch.cat([hidden[:half] + delta, hidden[half:]], dim=0)
        if store is not None:
            store.append(hidden.detach())
        if not interventions:
            return None  # leave the output object untouched
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook
