"""Slider trials, one module: one clip at a time on a visual-analogue scale.

One trial per (item, condition) that ``slider.conditions`` selects; every list holds
every one, or with ``slider.per_list`` list k takes the k-th window of one seeded cycle of
them (so each appears in as many lists as the others, give or take one, and at most once
per list). The trials of an item share its group, so the server never plays two in a row.

Power: as MUSHRA's, a two-sided paired t test of each condition against the reference
with effect size d_z (``slider_d``); lists that each rate ``per_list`` of N clips need
N / per_list times the assessors for each clip to be rated as often (an approximation of
the mixed model, which also uses the partial overlaps).
"""

from __future__ import annotations

from collections import Counter
from itertools import cycle, islice
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from artifact_schemas.study import N_, SliderScale
from stimuli_builder.layout import Design, TrialSpec, seeded_rng
from stimuli_builder.power import PowerRow, PowerTargets, t_row
from stimuli_builder.sections import Conditions, Section, SliderLabels
from stimuli_builder.trial_types.common import Findings, Study, asked, clip

if TYPE_CHECKING:
    from artifact_schemas import AnswerKey, StudyManifest
    from artifact_schemas.study import Trial
    from stimuli_builder.conditions import OwnStimuli

NAME = "slider"
# A list rates several conditions of an item: their trials share the item's group.
ONCE_PER_LIST = False


class SliderSection(Section):
    """Slider trials: one clip at a time on a visual-analogue scale."""

    enabled: bool = False
    question: Annotated[str, Field(min_length=1)] = N_("How much do you like this clip?")
    labels: SliderLabels = Field(default_factory=lambda: [N_("Not at all"), N_("Extremely")])
    # Conditions of the CSV to rate; [] = every condition under test (role "condition").
    conditions: Conditions = Field(default_factory=list)
    # Slider trials per list; default: every selected (item, condition) in every list.
    per_list: Annotated[int, Field(ge=1)] | None = None


def add_trials(design: Design, stimuli: OwnStimuli, sl: SliderSection, study: Study) -> None:
    k_lists = study.lists
    rated = [s for _, s in asked(stimuli, sl.conditions, "slider.conditions")]
    m = sl.per_list if sl.per_list is not None else len(rated)
    if m > len(rated):
        raise ValueError(f"slider.per_list: at most {len(rated)} (the clips the slider trials rate), got {m}")
    order = list(rated)
    if sl.per_list is not None:
        seeded_rng(study.seed, "slider-cycle").shuffle(order)
    seq = list(islice(cycle(order), k_lists * m))
    scale = SliderScale(min=0, max=100, labels=list(sl.labels))
    for k in range(k_lists):
        for s in seq[k * m : (k + 1) * m]:
            key = f"slider|{s.item!r}|{s.condition!r}|list{k}"
            design.trials[key] = TrialSpec(
                key,
                "slider",
                "main",
                sl.question,
                candidates=[clip(s, key)],
                sliders=scale,
                meta={"trial_type": NAME, "item": s.item, "group": s.item},
                match_group=f"slider|{s.item!r}",
            )
            design.lists[k].append(key)


def plan_row(stimuli: OwnStimuli, sl: SliderSection, lists: int, targets: PowerTargets) -> PowerRow:
    rated = [s for _, s in asked(stimuli, sl.conditions, "slider.conditions")]
    conditions = sorted({s.condition for s in rated})
    references = sorted({s.condition for s in rated if s.role == "reference"})
    versus = references[0] if references else conditions[0]
    compared = [c for c in conditions if c != versus]
    if not compared:
        raise ValueError(
            "slider.conditions: the report compares each condition with the reference "
            f"({versus!r}); rate at least two conditions for it to have a test to size"
        )
    share = (sl.per_list or len(rated)) / len(rated)
    per_condition = len(rated) / len(conditions)  # ratings of a condition per full pass
    return t_row(NAME, compared, per_condition, targets.slider_d, "two-sided", lists, targets, share)


def hidden_answer(trial: Trial, key: AnswerKey) -> int | None:
    return None  # a rating: nothing to find


def check(manifest: StudyManifest, key: AnswerKey) -> Findings:
    """Each (item, condition) a slider trial rates is in as many lists as the others, +- one."""
    report = Findings()
    by_id = {t.id: t for t in manifest.trials}
    counts: Counter[tuple[str | None, str | None]] = Counter()
    for lst in manifest.lists:
        for tid in lst.trials:
            t = by_id[tid]
            clip_key = key.clips.get(t.candidates[0]) if len(t.candidates) == 1 else None
            if key.trials[tid].trial_type == NAME and clip_key is not None:
                counts[(key.trials[tid].item, clip_key.condition)] += 1
    if counts:
        spread = max(counts.values()) - min(counts.values())
        report.balance_spread[NAME] = spread
        if spread > 1:
            report.problems.append(f"balance: slider presentations per item and condition differ by {spread}")
    return report
