"""MUSHRA trials (ITU-R BS.1534-3), one module: config, layout, power, checks.

For each item, every list holds one trial (each assessor rates every item): the open
reference, then as candidates the hidden reference, the anchors (the CSV's, and the
reference low-pass filtered as ``mushra.anchors`` asks) and every condition under test,
each on a 0-100 slider labelled Bad ... Excellent. Each list's trial of an item has its
own candidate order. The hidden reference's position is balanced per item over the lists
and over the study (``balanced_positions``, as the steered clip's is), so no position is a
good guess; the other candidates take the remaining places in an order drawn per trial.
The trials of an item share its group, so the server never plays two in a row.

Power: the report's condition difference from the reference is a paired comparison of
assessors (its t test has assessors - 1 df), so a two-sided paired t test with effect
size d_z (``slider_d``); every assessor rates every condition of a screen.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import Field, field_validator

from artifact_schemas.study import N_, SliderScale
from stimuli_builder.audio_prep import read_source
from stimuli_builder.generated import ANCHOR_CUTOFF_HZ, lowpass_transform
from stimuli_builder.layout import ClipSource, Design, TrialSpec, balanced_positions, seeded_rng
from stimuli_builder.power import PowerRow, PowerTargets, t_row
from stimuli_builder.sections import Section, SliderLabels
from stimuli_builder.trial_types.common import Findings, Study, clip

if TYPE_CHECKING:
    from artifact_schemas import AnswerKey, StudyManifest
    from artifact_schemas.study import Trial
    from stimuli_builder.conditions import Item, OwnStimuli

NAME = "mushra"
# Each list holds one trial of an item, and every item is in as many lists (check counts).
ONCE_PER_LIST = True

# The most clips one MUSHRA screen rates: more cannot be compared by ear on one screen
# (BS.1534-3 advises few conditions per trial; webMUSHRA's strict mode stops at 12), and the
# app takes play counts for at most 64 clips a trial.
MAX_MUSHRA_CANDIDATES = 15
# A generated anchor that removes less of its reference's energy than this (dB, the share
# above the cut-off) sounds like the reference: BS.1534's anchor is meant to be heard as
# clearly worse, and one that is not makes a low rating of it a sign of guessing, not of
# listening. -40 dB is 1/10,000 of the energy; the example's clips lose -15 to -39 dB.
INAUDIBLE_ANCHOR_DB = -40.0
# BS.1534-3's continuous quality scale: five intervals, Bad to Excellent.
MUSHRA_LABELS = [N_("Bad"), N_("Poor"), N_("Fair"), N_("Good"), N_("Excellent")]
# Anchors made from each item's reference (stimuli_builder.generated.ANCHOR_CUTOFF_HZ).
AnchorName = Literal["lp3500", "lp7000"]


class MushraSection(Section):
    """MUSHRA trials (ITU-R BS.1534-3): one per item and list, every condition on a slider."""

    enabled: bool = True
    question: Annotated[str, Field(min_length=1)] = N_(
        "Rate the basic audio quality of each clip compared with the reference."
    )
    anchors: list[AnchorName] = Field(default_factory=lambda: ["lp3500"])  # type: ignore[arg-type]
    labels: SliderLabels = Field(default_factory=lambda: list(MUSHRA_LABELS))

    @field_validator("anchors")
    @classmethod
    def _distinct(cls, anchors: list[str]) -> list[str]:
        if len(set(anchors)) != len(anchors):
            raise ValueError(f"each anchor once, got {anchors}")
        return anchors


def add_trials(design: Design, stimuli: OwnStimuli, mu: MushraSection, study: Study) -> None:
    k_lists, seed = study.lists, study.seed
    by_size: dict[int, list[Item]] = defaultdict(list)
    for item in stimuli.items:
        if not item.anchors and not mu.anchors:
            raise ValueError(
                f"mushra.anchors: at least one anchor per item (BS.1534-3); item {item.name!r} has no "
                f'anchor rows in {stimuli.csv.name} and mushra.anchors is empty: keep "lp3500"'
            )
        n = 1 + len(item.anchors) + len(mu.anchors) + len(item.conditions)
        if n > MAX_MUSHRA_CANDIDATES:
            raise ValueError(
                f"stimuli.conditions: at most {MAX_MUSHRA_CANDIDATES} clips to rate on one MUSHRA screen "
                f"(hidden reference, anchors, conditions); item {item.name!r} of {stimuli.csv.name} has {n}: "
                "split its conditions into two studies or leave some out"
            )
        by_size[n].append(item)
        design.warnings += _inaudible_anchors(item, mu.anchors, study.sample_rate)
    scale = SliderScale(min=0, max=100, labels=list(mu.labels))
    # Items with as many candidates share one balance of the hidden reference's position.
    for n, items in sorted(by_size.items()):
        rng = seeded_rng(seed, "hidden-reference", n)
        placed = balanced_positions(items * k_lists, k_lists, len(items), n, rng)
        for k in range(k_lists):
            for item, (position, _) in zip(items, placed[k], strict=True):
                spec = _trial(item, k, position, mu, seed, scale)
                design.trials[spec.key] = spec
                design.lists[k].append(spec.key)


def _inaudible_anchors(item: Item, names: Sequence[str], sample_rate: int) -> list[str]:
    """A warning for each generated anchor that would take almost nothing from the reference."""
    if not names:
        return []
    audio = read_source(item.reference.path, sample_rate)
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / sample_rate)
    warnings = []
    for name in names:
        above = float(power[freqs > ANCHOR_CUTOFF_HZ[name]].sum()) / max(float(power.sum()), 1e-30)
        db = 10 * np.log10(max(above, 1e-30))
        if db < INAUDIBLE_ANCHOR_DB:
            warnings.append(
                f"mushra.anchors: {name} of item {item.name!r} removes only {db:.0f} dB of its reference's "
                f"energy (what lies above {ANCHOR_CUTOFF_HZ[name]:.0f} Hz): it will sound like the "
                "reference; add an anchor row of your own for this item (role anchor) or a lower cut-off"
            )
    return warnings


def _trial(item: Item, k: int, position: int, mu: MushraSection, seed: int, scale: SliderScale) -> TrialSpec:
    """Item ``item``'s trial in list ``k``, with the hidden reference at ``position``."""
    key = f"mushra|{item.name!r}|list{k}"
    reference = clip(item.reference, key)
    anchors = [
        ClipSource(
            "anchor",
            str(item.reference.path),
            use=key,
            condition=name,
            transform=lowpass_transform(ANCHOR_CUTOFF_HZ[name]),
        )
        for name in mu.anchors
    ]
    others = [*anchors, *(clip(s, key) for s in (*item.anchors, *item.conditions))]
    order = seeded_rng(seed, key, "candidates").permutation(len(others))
    candidates = [others[j] for j in order]
    candidates.insert(position, reference)
    return TrialSpec(
        key,
        "mushra",
        "main",
        mu.question,
        references=[reference],
        candidates=candidates,
        sliders=scale,
        meta={"trial_type": NAME, "item": item.name, "group": item.name},
        matched_reference=True,
    )


def plan_row(stimuli: OwnStimuli, mu: MushraSection, lists: int, targets: PowerTargets) -> PowerRow:
    items = stimuli.items
    compared = sorted({s.condition for i in items for s in (*i.anchors, *i.conditions)} | set(mu.anchors))
    return t_row(NAME, compared, len(items), targets.slider_d, "two-sided", lists, targets)


def hidden_answer(trial: Trial, key: AnswerKey) -> int | None:
    """The hidden reference's position among the candidates (None unless exactly one)."""
    hidden = _hidden(trial, key)
    return hidden[0] if len(hidden) == 1 else None


def _hidden(trial: Trial, key: AnswerKey) -> list[int]:
    return [i for i, c in enumerate(trial.candidates) if c in key.clips and key.clips[c].role == "reference"]


def check(manifest: StudyManifest, key: AnswerKey) -> Findings:
    """The hidden reference of an item's MUSHRA trials takes every position equally often
    (+- one) over the lists, as the steered clip does: no position is a good guess."""
    report = Findings()
    by_id = {t.id: t for t in manifest.trials}
    positions: dict[str, Counter[int]] = defaultdict(Counter)
    sizes: dict[str, int] = {}
    for lst in manifest.lists:
        for tid in lst.trials:
            t, k = by_id[tid], key.trials[tid]
            if t.kind != "mushra" or k.item is None:
                continue
            hidden = _hidden(t, key)
            if len(hidden) != 1:
                report.problems.append(f"mushra trial {tid}: {len(hidden)} hidden references (expected 1)")
                continue
            positions[k.item][hidden[0]] += 1
            sizes[k.item] = len(t.candidates)
    for item, counts in sorted(positions.items()):
        n, n_cands = sum(counts.values()), sizes[item]
        values = [counts.get(p, 0) for p in range(n_cands)]
        if max(values) - min(values) > 1:
            report.problems.append(
                f"mushra: item {item!r} has its hidden reference in positions {values} of its {n} "
                f"presentations (each position {n / n_cands:.1f} +- 1 expected)"
            )
    return report
