"""Which decoder layers a run records: layer numbers, or ``paper`` (Singh et al.'s five
depths, which need the model's depth and so are resolved once the model is loaded).

The one place ``paper`` is understood: commands parse it (``commands._common.parse_layers``),
configs check it (:func:`check_layers`) and the stages resolve it (:func:`resolve_layers`).
No torch here: configs import it at ``--help`` time.
"""

from __future__ import annotations

from typing import Literal

from artifact_schemas import FieldError

PAPER = "paper"
LayerChoice = list[int] | Literal["paper"]


def paper_layers(n_layers: int) -> list[int]:
    """Layer 2, 25%, 50% and 75% depth, and the second-to-last layer (Singh et al.)."""
    picks = {2, n_layers // 4, n_layers // 2, (3 * n_layers) // 4, n_layers - 2}
    return sorted(layer for layer in picks if 0 <= layer < n_layers)


def check_layers(layers: LayerChoice) -> LayerChoice:
    """``layers`` as a config keeps it: ``paper``, or the layer numbers sorted, each once."""
    if layers == PAPER:
        return PAPER
    if isinstance(layers, str) or not layers or min(layers) < 0:
        raise FieldError("layers", f"must be non-negative layer numbers or 'paper', got {layers}")
    return sorted(set(layers))


def resolve_layers(layers: LayerChoice, n_layers: int) -> list[int]:
    """The layer numbers of a model ``n_layers`` deep (``paper``: :func:`paper_layers`)."""
    return paper_layers(n_layers) if isinstance(layers, str) else list(layers)
