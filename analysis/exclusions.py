"""Which participants to exclude, and how many each rule removed; which MUSHRA
assessors the MUSHRA tables leave out (:class:`PostScreening`, applied by
:mod:`analysis.sliders`).

The rules on the data itself (headphone screening, attention checks, clips heard, median
reaction time) are :mod:`artifact_schemas.validity`'s: the same definition, thresholds
and facts by which ``study-app prolific --approve`` decides whom to pay without a look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from artifact_schemas.settings import check_settings, setting
from artifact_schemas.validity import SessionFacts, ValidityRules, facts_from_answers


@dataclass(frozen=True)
class ExclusionRules(ValidityRules):
    """:class:`~artifact_schemas.validity.ValidityRules` (screening, attention, clips heard,
    median RT), then incomplete sessions, applied in order; a participant removed by one
    rule is not counted again."""

    incomplete: bool = True
    # Bots of `study-app simulate` (data_source = simulated) in an export that also has
    # participants: left out first. An export of bots only is analysed, said as such.
    simulated_beside_participants: bool = True
    # Drop screening and practice rows after the participant rules.
    main_phase_only: bool = True


@dataclass(frozen=True)
class PostScreening:
    """ITU-R BS.1534-3 §4.1.2: an assessor is left out of the MUSHRA analysis who rates
    the hidden reference below ``reference_below`` in more than ``max_share`` of their
    trials, or an anchor above ``anchor_above`` in more than ``max_share`` of the trials
    that have one (``anchor_above=None``: no anchor rule).

    BS.1534 names the mid-range anchor (a 7 kHz low-pass); the export does not say which
    anchor is which, so any anchor counts: a low anchor rated above 90 is the plainer sign.
    """

    reference_below: float = setting(90.0, ge=0, le=100)
    """MUSHRA post-screening: a hidden reference rated below this..."""
    anchor_above: float | None = setting(90.0, ge=0, le=100)
    """...or an anchor rated above this..."""
    max_share: float = setting(0.15, ge=0, lt=1)
    """...in more than this share of trials leaves the assessor out."""

    def __post_init__(self) -> None:
        check_settings(self)


def _first(values: list[Any]) -> Any:
    """The first value that is not missing (the per-session columns repeat on every row)."""
    return next((v for v in values if v is not None and not pd.isna(v)), None)


def session_validity(responses: pd.DataFrame) -> dict[Any, SessionFacts]:
    """Per session id, the facts the validity rules look at, from the export's columns
    (``clips_unfetched`` is optional: an older export without it has unknown clips)."""
    n = len(responses)
    unfetched = responses["clips_unfetched"] if "clips_unfetched" in responses else [None] * n
    rows: dict[Any, tuple[list[Any], list[Any], list[tuple[str, float, Any]]]] = {}
    for sid, phase, rt, miss, passed, att in zip(
        responses["session_id"],
        responses["phase"],
        responses["rt_ms"],
        unfetched,
        responses["screening_passed"],
        responses["attention_correct"],
        strict=True,
    ):
        screening, attention, answers = rows.setdefault(sid, ([], [], []))
        screening.append(passed)
        attention.append(att)
        answers.append((phase, rt, miss))
    return {sid: facts_from_answers(_first(s), _first(a), answers) for sid, (s, a, answers) in rows.items()}


def apply_exclusions(
    responses: pd.DataFrame, rules: ExclusionRules = ExclusionRules()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (kept responses, exclusion table with one row per rule).

    The table has ``rule``, ``participants_removed``, ``responses_removed`` and the
    participants and responses left after the rule.
    """
    df = responses
    steps: list[tuple[str, set[Any]]] = []
    if rules.simulated_beside_participants and "data_source" in df:
        simulated = df["data_source"].eq("simulated")
        if simulated.any() and not simulated.all():
            bots = set(df.loc[simulated, "session_id"])
            steps.append(("simulated session (bots beside participants)", bots))
    facts = session_validity(df)
    for rule in rules.rules():
        steps.append((rule.name, {sid for sid, f in facts.items() if rule.check(f) is not None}))
    if rules.incomplete:
        status = df.groupby("session_id")["session_status"].first()
        incomplete = status.ne("completed") & status.ne("screened_out")
        steps.append(("incomplete session", set(incomplete[incomplete].index)))

    rows = [
        {
            "rule": "all responses",
            "participants_removed": 0,
            "responses_removed": 0,
            "participants_left": df["participant"].nunique(),
            "responses_left": len(df),
        }
    ]
    for rule_name, sessions in steps:
        gone = df["session_id"].isin(sessions)
        rows.append(
            {
                "rule": rule_name,
                "participants_removed": int(df.loc[gone, "participant"].nunique()),
                "responses_removed": int(gone.sum()),
            }
        )
        df = df[~gone]
        rows[-1] |= {"participants_left": df["participant"].nunique(), "responses_left": len(df)}
    if rules.main_phase_only:
        gone = df["phase"] != "main"
        rows.append(
            {
                "rule": "screening and practice trials",
                "participants_removed": 0,
                "responses_removed": int(gone.sum()),
            }
        )
        df = df[~gone]
        rows[-1] |= {"participants_left": df["participant"].nunique(), "responses_left": len(df)}
    return df.reset_index(drop=True), pd.DataFrame(rows)
