"""What the own-stimuli trial types share: the study-wide facts they lay trials out by, the
result of their checks, their clips and the conditions they ask about.

Nothing here (nor in a type's module) reads the whole study config: ``config`` holds the
types' sections, so a type that imported ``config`` would import itself round a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stimuli_builder.conditions import Item, OwnStimuli, Stimulus
from stimuli_builder.layout import ClipSource


@dataclass(frozen=True)
class Study:
    """What a type's layout needs of the config beyond its own section."""

    lists: int
    """lists.count"""
    seed: int
    """study.design_seed: every random choice is drawn from it (layout.seeded_rng)."""
    sample_rate: int
    """audio.sample_rate"""


@dataclass
class Findings:
    """What a type's ``check`` found in a built package."""

    problems: list[str] = field(default_factory=list)
    balance_spread: dict[str, int] = field(default_factory=dict)
    """name -> (max - min) presentations across lists (check's ``balance_spread``)."""


def clip(stimulus: Stimulus, use: str) -> ClipSource:
    """``stimulus`` as a clip of trial ``use`` (rendered with its own dither and offset)."""
    return ClipSource(stimulus.role, str(stimulus.path), use=use, condition=stimulus.condition)


def asked(stimuli: OwnStimuli, conditions: list[str], field: str) -> list[tuple[Item, Stimulus]]:
    """The (item, stimulus) pairs of the conditions named (``field`` names the config key
    in the error for one the CSV lacks), or of every condition under test (role
    ``condition``) if none is named."""
    known = {s.condition for item in stimuli.items for s in item.stimuli}
    unknown = [c for c in conditions if c not in known]
    if unknown:
        raise ValueError(
            f"{field}: conditions of {stimuli.csv.name} ({', '.join(sorted(known))}); "
            f"it has no {', '.join(map(repr, unknown))}"
        )
    return [
        (item, s)
        for item in stimuli.items
        for s in item.stimuli
        if (s.condition in conditions if conditions else s.role == "condition")
    ]
