"""One definition of valid data, for paying and for analysing (issue 31.3).

`study-app prolific --approve` looked at the screening and the attention checks only,
while the analysis also excluded fast responders, and neither looked at whether the
clips were heard. Both now judge by ``artifact_schemas.validity``: a session the
analysis would exclude is never approved without a look, and ``--approve`` says by
which rules and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from analysis.exclusions import ExclusionRules, apply_exclusions
from artifact_schemas import RESPONSES, load_table
from artifact_schemas.validity import SessionFacts, ValidityRules
from study_app.db import db
from study_app.models import Response, StudySession
from study_app.prolific.pay import ApprovalRules
from tests.study_app.fake_prolific import FakeProlific
from tests.study_app.prolific_ids import STUDY, submission_of

TOKEN = "tok-SECRET-valid-31-3"


@pytest.fixture
def prolific(study_app: tuple[Flask, Any], serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = FakeProlific(TOKEN)
    with serve(fake.app) as server:
        monkeypatch.setenv("PROLIFIC_API_URL", server.url)
        monkeypatch.setenv("PROLIFIC_TOKEN", TOKEN)
        yield fake


def _cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["prolific", "pilot", *args])


def test_payment_and_analysis_share_the_rules_and_thresholds() -> None:
    assert ApprovalRules is ValidityRules
    assert isinstance(ExclusionRules(), ValidityRules)
    assert ExclusionRules().rules() and [r.name for r in ExclusionRules().rules()] == [
        r.name for r in ApprovalRules().rules()
    ]
    facts = SessionFacts(screening_passed=True, attention_correct=1.0, clips_unheard=0, median_rt_ms=300.0)
    assert (
        ApprovalRules().reasons(facts)
        == ExclusionRules().reasons(facts)
        == ["median reaction time 300 ms (< 500 ms)"]
    )
    assert ApprovalRules(min_median_rt_ms=None).reasons(facts) == []


def test_approve_reviews_what_the_analysis_excludes_and_says_by_which_rules(
    study_app: tuple[Flask, Any], prolific: FakeProlific, new_participant: Any, tmp_path: Path
) -> None:
    app, _ = study_app
    settings = tmp_path / "prolific.toml"
    settings.write_text("reward_per_hour = 9.0\nscreen_out_reward = 0.25\n")
    made = _cli(app, "--create", "--base-url", "https://study.example.org", "--settings", str(settings))
    assert made.exit_code == 0, made.output
    for name in ("GOOD", "FAST", "DEAF"):
        who = new_participant()
        who.enter(pid=name)
        who.complete()
        prolific.add(STUDY, name, "AWAITING REVIEW")
    with app.app_context():
        ids = {
            name: db.session.scalars(
                select(StudySession.id).where(StudySession.prolific_session_id == submission_of(name))
            ).one()
            for name in ("GOOD", "FAST", "DEAF")
        }
        # FAST clicked through every trial in 150 ms; DEAF's answers were stored before the
        # server refused clips not served in full (older data): both pass screening and attention.
        db.session.execute(update(Response).where(Response.session_id == ids["FAST"]).values(rt_ms=150.0))
        one = db.session.scalars(select(Response.id).where(Response.session_id == ids["DEAF"])).first()
        db.session.execute(update(Response).where(Response.id == one).values(clips_unfetched=2))
        db.session.commit()

    dry = _cli(app, "--approve", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (
        "rules (the analysis excludes by the same): headphone screening passed; attention checks "
        ">= 50% right; every clip served in full before each answer; median RT on main trials >= 500 ms"
    ) in dry.output
    assert "would approve 1 submission(s); 2 to review" in dry.output
    assert f"approve {submission_of('GOOD')}: completed, passes every rule" in dry.output
    assert (
        f"review {submission_of('FAST')}: s{ids['FAST']} median reaction time 150 ms (< 500 ms)" in dry.output
    )
    assert (
        f"review {submission_of('DEAF')}: s{ids['DEAF']} answered with 2 required clip(s) not served in full"
    ) in dry.output
    approved = _cli(app, "--approve")
    assert approved.exit_code == 0 and prolific.approved == [submission_of("GOOD")]

    # The analysis of the export removes exactly those two, each by its rule.
    out = tmp_path / "responses.parquet"
    exported = app.test_cli_runner().invoke(
        args=["export", "pilot", "--format", "parquet", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    kept, table = apply_exclusions(load_table(out, RESPONSES))
    removed = table.set_index("rule")["participants_removed"]
    assert removed["clips not heard in full"] == 1 and removed["median RT < 500 ms"] == 1
    assert set(kept["session_id"]) == {f"s{ids['GOOD']}"}
