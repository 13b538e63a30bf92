"""What a design is made of, apart from how a study config fills it: clips, trials, lists,
and the balanced draw of answer positions that every trial type uses.

Nothing here reads the config (``design`` and the trial types' modules in
``trial_types`` do), so a trial type's module imports it without reaching ``config``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from artifact_schemas.study import ClipRole, Phase, RatingScale, SliderScale, TrialKind


@dataclass(frozen=True)
class ClipSource:
    """A clip before rendering: an audio file or a generated signal, and its role."""

    role: ClipRole
    source: str  # file path, or "generated:<name>" (see Design.generated)
    # Comparison clips get one clip id per trial (``use`` = trial key), so a participant
    # cannot spot the shared baseline by seeing the same id in several trials.
    use: str = ""
    feature: str | None = None  # "layer:feature_id"
    normalise: bool = True
    # How the renderer changes the source first (stimuli_builder.attention.transform and
    # generated.lowpass): "" none, "half_speed", "instruction:<i>" (a spoken "choose answer
    # number i+1"), "lowpass:<hz>" (a MUSHRA anchor made from the reference).
    transform: str = ""
    condition: str | None = None  # own stimuli: the condition of the conditions CSV


@dataclass
class TrialSpec:
    key: str  # stable, unique; trial and option ids derive from it
    kind: TrialKind
    phase: Phase
    question: str
    references: list[ClipSource] = field(default_factory=list)
    candidates: list[ClipSource] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    correct_option: int | None = None
    correct_candidate: int | None = None
    rating: RatingScale | None = None
    confidence: RatingScale | None = None
    sliders: SliderScale | None = None
    # Trials with the same match group have their candidates rendered together, to one
    # length and one byte size: one clip per slider trial would otherwise give its
    # condition away by its file's size (a noisier version compresses worse) or length.
    match_group: str = ""
    feedback: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # TrialKey fields
    segments: list[tuple[float, float]] = field(default_factory=list)  # see Trial.segments
    # MUSHRA: the references are rendered with the candidates (one length, one byte size,
    # dither of their own), so the open reference's file does not point at the hidden one.
    matched_reference: bool = False


@dataclass
class Design:
    trials: dict[str, TrialSpec]
    lists: list[list[str]]  # trial keys per list
    generated: dict[str, np.ndarray]  # "generated:<name>" -> audio at the study rate
    calibration: ClipSource
    screening_kind: Literal["huggins", "antiphase"] | None
    # What the builder left out and why (also logged): e.g. a label with too few foils.
    warnings: list[str] = field(default_factory=list)
    # The headphone check's example (shown with its answer, never scored) and that answer.
    screening_example: tuple[ClipSource, int] | None = None


def seeded_rng(*parts: object) -> np.random.Generator:
    """A generator drawn from the seed and names: every random choice of a design has its own."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


def balanced_positions(
    seq: Sequence[_Keyed], k_lists: int, m: int, n_positions: int, rng: np.random.Generator
) -> list[list[tuple[int, int]]]:
    """Per list, per trial (in ``seq``'s windows), a (position, square) for its answer.

    Each feature's presentations take the positions in blocks of one permutation each, so
    every position comes up equally often per feature (+- one), and are then shuffled, so a
    list's trials draw their positions independently, not as one cycle per list: with three
    steering trials at positions 0, 1, 2 once each, the last one's position followed from
    the first two (issue 34.5). Of ``_POSITION_DRAWS`` such draws the one whose lists say
    least about a trial's position from the others' (``_elimination_score``) is kept, among
    those that keep the study's positions within one of each other.
    ``square`` picks one of two Latin squares per block, so the other candidates of a
    steering trial are balanced with the steered one.
    """
    counts = Counter(f.key for f in seq[: k_lists * m])
    best: tuple[tuple[bool, float], list[list[tuple[int, int]]]] | None = None
    for _ in range(_POSITION_DRAWS):
        # The blocks' leftovers come from one shuffled, balanced pool over the whole study
        # (each feature's distinct), so the study's positions are balanced too.
        keys = sorted(counts)
        rng.shuffle(keys)
        pool = [j % n_positions for j in range(sum(counts[k] % n_positions for k in keys))]
        rng.shuffle(pool)
        drawn: dict[str, list[tuple[int, int]]] = {}
        for key in keys:
            full, left = divmod(counts[key], n_positions)
            values: list[tuple[int, int]] = []
            for _block in range(full):
                square = int(rng.integers(2))
                values += [(int(x), square) for x in rng.permutation(n_positions)]
            square = int(rng.integers(2))
            mine: list[int] = []
            for x in list(pool):
                if len(mine) < left and x not in mine:
                    mine.append(x)
                    pool.remove(x)
            mine += [int(x) for x in rng.permutation(n_positions) if x not in mine][: left - len(mine)]
            values += [(x, square) for x in mine]
            rng.shuffle(values)
            drawn[key] = values
        out = [[drawn[f.key].pop() for f in seq[k * m : (k + 1) * m]] for k in range(k_lists)]
        # A feature whose leftovers the pool could not give distinct took positions outside
        # it, which can unbalance the study by two: such a draw is kept only if none is better.
        study = Counter(p for placed in out for p, _ in placed)
        spread = max(study.get(x, 0) for x in range(n_positions)) - min(
            study.get(x, 0) for x in range(n_positions)
        )
        score = (spread > 1, abs(_elimination_score(out, n_positions) - 1 / n_positions))
        if best is None or score < best[0]:
            best = (score, out)
    assert best is not None
    return best[1]


# Draws of answer positions to choose the least predictable from (the design takes ms).
_POSITION_DRAWS = 50


def _elimination_score(lists: list[list[tuple[int, int]]], n_positions: int) -> float:
    """Expected accuracy of guessing each trial's position as one its list's other trials
    use least (stimuli_builder.no_listening scores the same strategy on a package)."""
    scores = []
    for placed in lists:
        for i, (position, _) in enumerate(placed):
            used = Counter(p for j, (p, _) in enumerate(placed) if j != i)
            least = min(used.get(x, 0) for x in range(n_positions))
            ties = [x for x in range(n_positions) if used.get(x, 0) == least]
            scores.append(1 / len(ties) if position in ties else 0.0)
    return float(np.mean(scores)) if scores else 0.0
