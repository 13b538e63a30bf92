"""Which participants to exclude, and how many each rule removed."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class ExclusionRules:
    """Rules applied in order; a participant removed by one rule is not counted again."""

    failed_screening: bool = True
    # Exclude when the fraction of attention trials answered correctly is below this.
    min_attention_correct: float | None = 0.5
    # Exclude when the median reaction time over main trials is below this (ms).
    min_median_rt_ms: float | None = 500.0
    incomplete: bool = True
    # Drop screening and practice rows after the participant rules.
    main_phase_only: bool = True


def apply_exclusions(
    responses: pd.DataFrame, rules: ExclusionRules = ExclusionRules()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (kept responses, exclusion table with one row per rule).

    The table has ``rule``, ``participants_removed``, ``responses_removed`` and the
    participants and responses left after the rule.
    """
    df = responses
    steps: list[tuple[str, pd.Series]] = []
    per_session = df.groupby("session_id")
    if rules.failed_screening:
        failed = per_session["screening_passed"].first().eq(False)
        steps.append(("failed headphone screening", failed[failed].index.to_series()))
    if rules.min_attention_correct is not None:
        att = per_session["attention_correct"].first()
        low = att < rules.min_attention_correct
        steps.append(
            (f"attention checks < {rules.min_attention_correct:.0%} correct", low[low].index.to_series())
        )
    if rules.min_median_rt_ms is not None:
        main = df[df["phase"] == "main"]
        rt = main.groupby("session_id")["rt_ms"].median()
        fast = rt < rules.min_median_rt_ms
        steps.append((f"median RT < {rules.min_median_rt_ms:.0f} ms", fast[fast].index.to_series()))
    if rules.incomplete:
        status = per_session["session_status"].first()
        incomplete = status.ne("completed") & status.ne("screened_out")
        steps.append(("incomplete session", incomplete[incomplete].index.to_series()))

    rows = [
        {
            "rule": "all responses",
            "participants_removed": 0,
            "responses_removed": 0,
            "participants_left": df["participant"].nunique(),
            "responses_left": len(df),
        }
    ]
    for rule, sessions in steps:
        gone = df["session_id"].isin(set(sessions))
        rows.append(
            {
                "rule": rule,
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
