"""ABX trials, one module: A and B, then X, one of the two; the participant says which.

Per list, item and condition ``abx.repeats`` trials: A and B are the reference and the
condition, X the one the layout names. A list's trials take the four layouts in turn (list
k starting two on from list k - 1), so X is A in half of them, give or take one: a list
whose every X was A would be answered without listening. The answer is an option ("A" or
"B"), so the no-listening strategies of every option trial apply to it.

Power: the report tests the participants' own proportions correct against 1/2 (one-sided
t); a participant answers items x repeats trials of each condition, so the sd of their
proportions is sqrt(p (1 - p) / trials + ``abx_sd``^2) and d = (p - 1/2) / sd.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from artifact_schemas.study import N_
from stimuli_builder.layout import Design, TrialSpec
from stimuli_builder.power import PowerRow, PowerTargets, t_row
from stimuli_builder.sections import Conditions, Section
from stimuli_builder.trial_types.common import Findings, Study, asked, clip

if TYPE_CHECKING:
    from artifact_schemas import AnswerKey, StudyManifest
    from artifact_schemas.study import Trial
    from stimuli_builder.conditions import Item, OwnStimuli, Stimulus

NAME = "abx"
# A list asks each (item, condition) ``repeats`` times.
ONCE_PER_LIST = False

# The layouts, taken in turn: (the condition is A rather than B, X is B rather than A).
# Two consecutive ones always put X once on A and once on B.
_LAYOUTS = ((False, False), (False, True), (True, True), (True, False))


class AbxSection(Section):
    """ABX trials: A and B (the reference and a condition, in either order), then X, one of
    the two; the participant says which. Per list, item and condition ``repeats`` trials."""

    enabled: bool = False
    question: Annotated[str, Field(min_length=1)] = N_("Which one is X: A or B?")
    # Conditions of the CSV told apart from the reference; [] = every condition under test.
    conditions: Conditions = Field(default_factory=list)
    # Trials per list, item and condition; the four layouts (which clip is A, whether X is
    # A or B) take turns, so X is A as often as B within a list when repeats is even.
    repeats: Annotated[int, Field(ge=1, le=8)] = 2


def _compared(stimuli: OwnStimuli, ab: AbxSection) -> list[tuple[Item, Stimulus]]:
    pairs = asked(stimuli, ab.conditions, "abx.conditions")
    return [(i, s) for i, s in pairs if s.role != "reference"]


def add_trials(design: Design, stimuli: OwnStimuli, ab: AbxSection, study: Study) -> None:
    compared = _compared(stimuli, ab)
    for k in range(study.lists):
        turn = 2 * k
        for item, s in compared:
            for r in range(ab.repeats):
                condition_first, x_is_b = _LAYOUTS[turn % len(_LAYOUTS)]
                turn += 1
                key = f"abx|{item.name!r}|{s.condition!r}|list{k}|{r}"
                a, b = (s, item.reference) if condition_first else (item.reference, s)
                x = b if x_is_b else a
                design.trials[key] = TrialSpec(
                    key,
                    "abx",
                    "main",
                    ab.question,
                    references=[clip(a, key), clip(b, key)],
                    candidates=[clip(x, key)],
                    options=["A", "B"],
                    correct_option=int(x_is_b),
                    meta={
                        "trial_type": NAME,
                        "item": item.name,
                        "group": item.name,
                        "condition": s.condition,
                    },
                    matched_reference=True,
                )
                design.lists[k].append(key)


def plan_row(stimuli: OwnStimuli, ab: AbxSection, lists: int, targets: PowerTargets) -> PowerRow:
    compared = sorted({s.condition for _, s in _compared(stimuli, ab)})
    if not compared:
        raise ValueError("abx.conditions: conditions to compare with the reference (the CSV has none)")
    trials = len(stimuli.items) * ab.repeats  # per participant and condition (every list has all)
    p = targets.abx_correct
    d = (p - 0.5) / math.sqrt(p * (1 - p) / trials + targets.abx_sd**2)
    return t_row(NAME, compared, trials, d, "larger", lists, targets, chance=0.5, shown=p)


def hidden_answer(trial: Trial, key: AnswerKey) -> int | None:
    return None  # the answer is an option, scored as every option trial's


def check(manifest: StudyManifest, key: AnswerKey) -> Findings:
    """Within a list, X is B in half of the ABX trials, give or take one: a list whose X
    was mostly A would be answered by always saying A."""
    report = Findings()
    by_id = {t.id: t for t in manifest.trials}
    for lst in manifest.lists:
        answers = []
        for tid in lst.trials:
            k = key.trials[tid]
            ids = [o.id for o in by_id[tid].options]
            if k.trial_type == NAME and k.correct_option in ids:
                answers.append(ids.index(k.correct_option))
        on_b = sum(answers)
        if abs(2 * on_b - len(answers)) > 1:
            report.problems.append(
                f"abx: list {lst.id} puts X on B in {on_b} of its {len(answers)} trials "
                "(half, +- one, expected): always answering A or B would beat chance"
            )
    return report
