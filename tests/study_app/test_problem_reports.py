"""Issue 36: "Problem with the audio?" under a trial reaches the researcher with its answer.

A report names a trial of the study, a reason of the page's list and the participant's
words; the server refuses anything else (a made-up reason, a novel, another shape), and
the export puts each trial's reports, in the order sent, beside its answer. A report under
a trial the participant never answered (they gave up on a silent clip) is not lost: the
problem_reports table has every report, and the dashboard counts them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask

from artifact_schemas import PROBLEM_REPORTS, RESPONSES, AnswerKey, load_table


def _report(p: Any, data: Any) -> Any:
    p.go()
    body = {"kind": "clip_problem", "data": data}
    return p.client.post(f"/api/s/{p.slug}/event", json=body, headers={"X-CSRFToken": p.token})


def test_problem_reports_are_checked_and_exported_with_the_trials_answer(
    new_participant: Any, study_app: tuple[Flask, AnswerKey], tmp_path: Path
) -> None:
    app, _ = study_app
    p = new_participant()
    p.enter()
    p.post_stage("volume")
    first = p.trial()
    tid = first["trial"]["id"]
    # What the server refuses: each names the field at fault, and stores nothing.
    for data, field in (
        ({"trial": tid, "reason": "boring"}, "data.reason"),
        ({"trial": tid, "reason": "other", "text": "x" * 501}, "data.text"),
        ({"trial": "../../etc", "reason": "other"}, "data.trial"),
        ({"trial": "t999999", "reason": "other"}, "data.trial"),  # not a trial of the study
        ({"reason": "silent"}, "data.trial"),
        ({"trial": tid, "reason": "other", "text": 7}, "data.text"),
    ):
        refused = _report(p, data)
        assert refused.status_code == 400 and field in refused.get_json()["error"], (data, refused.get_json())
    # Two reports under the first trial, one with a spreadsheet formula as its text.
    assert _report(p, {"trial": tid, "reason": "level", "text": "  far too loud  "}).status_code == 204
    formula = '=HYPERLINK("http://evil.example","x")'
    assert _report(p, {"trial": tid, "reason": "other", "text": formula}).status_code == 204
    assert p.answer(first).status_code == 200
    second = p.trial()
    assert p.answer(second).status_code == 200

    for fmt in ("csv", "parquet"):
        out = tmp_path / f"responses.{fmt}"
        result = app.test_cli_runner().invoke(args=["export", "pilot", "--format", fmt, "--out", str(out)])
        assert result.exit_code == 0, result.output
        rows = load_table(out, RESPONSES).set_index("trial_id")
        reports = json.loads(rows.loc[tid, "problems"])
        assert reports == [{"reason": "level", "text": "far too loud"}, {"reason": "other", "text": formula}]
        assert rows.loc[second["trial"]["id"], "problems"] is None  # nothing reported there
    # In the CSV the cell is a JSON list: it starts with "[", never with the formula's "=".
    assert '"[{' in (tmp_path / "responses.csv").read_text()


def test_a_report_on_a_trial_never_answered_reaches_the_researcher(
    new_participant: Any, study_app: tuple[Flask, AnswerKey], admin_client: Any, tmp_path: Path
) -> None:
    app, _ = study_app
    stays, leaves = new_participant(), new_participant()
    for p in (stays, leaves):
        p.enter()
        p.post_stage("volume")
    answered = stays.trial()
    assert _report(stays, {"trial": answered["trial"]["id"], "reason": "level"}).status_code == 204
    assert stays.answer(answered).status_code == 200
    # The other hears silence, says so and closes the tab: no response row will ever carry it.
    given_up = leaves.trial()["trial"]
    assert (
        _report(leaves, {"trial": given_up["id"], "reason": "silent", "text": "nothing plays"}).status_code
        == 204
    )

    out = tmp_path / "problems.parquet"
    args = ["export", "pilot", "--table", "problem_reports", "--format", "parquet", "--out", str(out)]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0 and "wrote 2 problem reports" in result.output, result.output
    rows = load_table(out, PROBLEM_REPORTS)
    assert rows["session_id"].nunique() == 2
    unanswered, kept = rows[~rows["answered"]], rows[rows["answered"]]
    assert unanswered[["trial_id", "reason", "text"]].values.tolist() == [
        [given_up["id"], "silent", "nothing plays"]
    ]
    assert kept[["trial_id", "reason", "text"]].values.tolist() == [[answered["trial"]["id"], "level", ""]]
    clips = json.loads(unanswered["clips"].iloc[0])
    assert clips == [c["id"] for c in (*given_up["references"], *given_up["candidates"])]
    # The responses export has the answered report only; the dashboard counts both.
    stats = admin_client.get("/admin/api/s/pilot/stats").get_json()
    assert stats["problem_reports"] == {"all": 2, "unanswered": 1}
    download = admin_client.get("/admin/s/pilot/problem-reports.csv")
    assert download.status_code == 200 and "nothing plays" in download.get_data(as_text=True)
    refused = app.test_cli_runner().invoke(args=[*args, "--include-prolific-ids"])
    assert refused.exit_code != 0 and "--include-prolific-ids" in refused.output
