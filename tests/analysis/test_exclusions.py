"""The analysis excludes by the one definition of valid data (artifact_schemas.validity),
the rules `study-app prolific --approve` pays by (issue 31.3): now including clips heard."""

from __future__ import annotations

from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.simulate import simulate_export
from artifact_schemas import RESPONSES


def test_answers_given_without_every_clip_served_in_full_exclude_their_session() -> None:
    df = RESPONSES.validate(simulate_export(6, 3, seed=3))
    sessions = df["session_id"].unique()
    df["clips_unfetched"] = 0
    df.loc[df.index[df["session_id"] == sessions[0]][:1], "clips_unfetched"] = 2
    kept, table = apply_exclusions(df, ExclusionRules())
    removed = table.set_index("rule")["participants_removed"]
    assert list(table["rule"])[1:5] == [
        "failed headphone screening",
        "attention checks < 50% correct",
        "clips not heard in full",
        "median RT < 500 ms",
    ]
    assert removed["clips not heard in full"] == 1 and sessions[0] not in set(kept["session_id"])
    kept_all, _ = apply_exclusions(df, ExclusionRules(require_clips_heard=False))
    assert sessions[0] in set(kept_all["session_id"])


def test_an_export_without_the_listening_column_loses_nobody_to_it() -> None:
    df = simulate_export(4, 3, seed=1)
    assert "clips_unfetched" not in df or df["clips_unfetched"].isna().all()
    old = RESPONSES.validate(df.drop(columns=["clips_unfetched"], errors="ignore"))
    _, table = apply_exclusions(old)
    assert table.set_index("rule").loc["clips not heard in full", "participants_removed"] == 0


def test_the_median_rt_counts_main_trials_only() -> None:
    df = RESPONSES.validate(simulate_export(4, 3, seed=2))
    rows = df.index[df["session_id"] == df["session_id"].unique()[0]]
    practice = rows[: 3 * len(rows) // 4]
    df.loc[rows, "rt_ms"] = 1500.0
    df.loc[practice, "phase"] = "practice"  # three quarters of its answers fast, but practice
    df.loc[practice, "rt_ms"] = 10.0
    assert df.loc[rows, "rt_ms"].median() < 500
    _, table = apply_exclusions(df)
    assert table.set_index("rule").loc["median RT < 500 ms", "participants_removed"] == 0
