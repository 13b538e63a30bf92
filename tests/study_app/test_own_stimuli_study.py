"""Issue 36: a study of one's own clips (MUSHRA and slider trials) runs end to end.

Built from a folder of 12 real audio files and a conditions CSV
(stimuli_builder.example.write_example_stimuli), imported, answered by participants over
the API and by bots over real HTTP, exported and reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from scipy import stats
from sqlalchemy import select

from analysis.report import build_report
from artifact_schemas import RESPONSES, AnswerKey, load_key, load_study, load_table
from study_app.db import db
from study_app.models import Response, Trial
from study_app.simulate import BotConfig, run_bots
from tests.study_app.conftest import ADMIN_PASSWORD, Participant, csrf_of

SLUG = "own-clips"


@pytest.fixture
def own_app(app: Flask, own_package: Path) -> Iterator[tuple[Flask, AnswerKey]]:
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["import", str(own_package)])
        assert result.exit_code == 0, result.output
    app.config["SESSIONS_PER_IP_PER_MINUTE"] = 10_000
    yield app, load_key(own_package / "key.json")


def _to_slider_trial(p: Participant, kind: str) -> dict[str, Any]:
    """Answer trials until the session's current one is of ``kind``; return it."""
    for _ in range(40):
        page = p.go().get_data(as_text=True)
        if "Set your volume" in page:
            p.post_stage("volume")
            continue
        if "/instructions" in page:
            p.post_stage("instructions")
            continue
        data = p.trial()
        if data["trial"]["kind"] == kind:
            return data
        assert p.answer(data).status_code == 200
    raise AssertionError(f"no {kind} trial")


def test_a_slider_answer_is_one_integer_on_the_scale_for_each_candidate(
    own_app: tuple[Flask, AnswerKey],
) -> None:
    app, key = own_app
    p = Participant(app, SLUG, key)
    assert p.enter().status_code == 302
    data = _to_slider_trial(p, "mushra")
    t = data["trial"]
    assert t["sliders"]["min"] == 0 and t["sliders"]["max"] == 100
    assert t["sliders"]["labels"] == ["Bad", "Poor", "Fair", "Good", "Excellent"]
    ids = [c["id"] for c in t["candidates"]]
    assert len(ids) == 5 and len(t["references"]) == 1
    good = {c: 10 * (i + 1) for i, c in enumerate(ids)}
    refused = {
        "one slider left unmoved": {c: v for c, v in good.items() if c != ids[0]},
        "a clip not in the trial": {**good, "zzz": 50},
        "above the scale": {**good, ids[0]: 101},
        "below the scale": {**good, ids[0]: -1},
        "a fraction": {**good, ids[0]: 50.5},
        "a boolean": {**good, ids[0]: True},
        "a string": {**good, ids[0]: "50"},
        "not an object": list(good.values()),
    }
    for why, sliders in refused.items():
        r = p.answer(data, sliders=sliders)
        assert r.status_code == 400, (why, r.get_json())
        assert "slider" in r.get_json()["error"], why
    # Options or a rating are no answer to a slider trial either.
    assert p.answer(data, sliders=good, rating=3).status_code == 400
    assert p.answer(data, sliders=good).status_code == 200
    with app.app_context():
        stored = db.session.scalars(
            select(Response.slider_values).join(Trial).where(Trial.trial_key == t["id"])
        ).all()
        assert stored == [good]  # nothing of the refused answers, the good one whole


def test_a_choice_trial_takes_no_sliders(own_app: tuple[Flask, AnswerKey]) -> None:
    app, key = own_app
    p = Participant(app, SLUG, key)
    p.enter()
    p.post_stage("volume")
    data = p.trial()
    assert data["trial"]["kind"] == "screening" and data["trial"]["sliders"] is None
    r = p.answer(data, sliders={c["id"]: 50 for c in data["trial"]["references"]})
    assert r.status_code == 400 and "no sliders" in r.get_json()["error"]


def test_bots_with_planted_effects_export_every_slider_with_its_role_and_the_report_finds_them(
    own_app: tuple[Flask, AnswerKey], own_package: Path, serve: Any, tmp_path: Path
) -> None:
    app, key = own_app
    manifest = load_study(own_package / "study.json")
    planted = {"noisy": 70.0, "coarse": 45.0}
    # The package's ids, the list each bot gets and the order of its trials change from run
    # to run, so the bots' data do too: the checks below hold on any such data, not only
    # on one lucky draw (an ABX test at accuracy 0.8 with 8 bots once missed p < .05).
    n = 16
    cfg = BotConfig(participants=n, concurrency=4, seed=3, accuracy=0.9, slider_means=planted)
    with serve(app) as server:
        results = run_bots(server.url, SLUG, manifest, key, cfg)
    assert {r.status for r in results} == {"completed"}
    out = tmp_path / "responses.csv"
    result = app.test_cli_runner().invoke(args=["export", SLUG, "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = load_table(out, RESPONSES)
    rated = df[df.trial_type.isin(["mushra", "slider"])]
    assert len(rated) == n * 9  # each list: 3 MUSHRA and 6 slider trials
    assert rated.item.notna().all() and rated.answer.isna().all()
    roles: dict[str, set[str]] = {}
    values: dict[str, list[int]] = {}
    for _, row in rated.iterrows():
        sliders = json.loads(row.sliders)
        trial = next(t for t in manifest.trials if t.id == row.trial_id)
        assert [s["clip"] for s in sliders] == trial.candidates  # screen order
        for s in sliders:
            assert s["role"] == key.clips[s["clip"]].role and s["condition"] == key.clips[s["clip"]].condition
            assert isinstance(s["value"], int) and 0 <= s["value"] <= 100
            roles.setdefault(s["condition"], set()).add(s["role"])
            values.setdefault(s["condition"], []).append(s["value"])
    assert roles == {
        "original": {"reference"},
        "lp3500": {"anchor"},
        "thin": {"anchor"},
        "noisy": {"condition"},
        "coarse": {"condition"},
    }
    mean = {c: sum(v) / len(v) for c, v in values.items()}
    # The bots' planted order comes back: hidden reference > noisy > coarse > anchors.
    assert mean["original"] > mean["noisy"] > mean["coarse"] > max(mean["lp3500"], mean["thin"])
    abx = df[df.trial_type == "abx"]
    assert len(abx) == n * 6 and set(abx.condition) == {"noisy", "coarse"} and abx.correct.notna().all()

    # The report recovers what was planted: each condition's MUSHRA and slider mean, and the
    # ABX share right of bots right 90% of the time, within 4 standard errors (read off the
    # 95% interval: whether the interval itself covers 95% of the time is tested over many
    # simulated studies in tests/analysis; one study misses it 1 time in 20 by design).
    report = build_report(df, bayes=False)
    t = stats.t.ppf(0.975, n - 1)

    def near(estimate: float, row: Any, value: float) -> bool:
        return abs(estimate - value) <= 4 * (row.ci_high - row.ci_low) / (2 * t)

    for table in ("mushra_conditions", "slider_conditions"):
        rows = report.tables[table].set_index("condition")
        for condition, value in planted.items():
            row = rows.loc[condition]
            assert near(row["mean"], row, value), (table, condition, row.to_dict())
    # Differences are from the hidden reference, whatever the CSV named it ("original").
    model = report.tables["mushra_model"]
    assert set(model["versus"]) == {"original"} and "original" not in set(model["condition"])
    screened = report.tables["mushra_post_screening"]
    assert len(screened) == n and not screened["excluded"].any()  # bots rate the reference near 98
    for _, row in report.tables["abx"].iterrows():
        assert near(row.p_correct, row, 0.9), row.to_dict()
        assert row.p_holm < 0.001 and row.d_prime_low > 0, row.to_dict()


def test_the_dashboard_and_its_download_show_a_study_of_own_clips(own_app: tuple[Flask, AnswerKey]) -> None:
    app, key = own_app
    p = Participant(app, SLUG, key)
    p.enter()
    data = _to_slider_trial(p, "mushra")
    assert p.answer(data).status_code == 200
    runner = app.test_cli_runner()
    assert (
        runner.invoke(
            args=["create-admin", "alice", "--password-stdin"], input=ADMIN_PASSWORD + "\n"
        ).exit_code
        == 0
    )
    admin = app.test_client()
    token = csrf_of(admin.get("/admin/login").get_data(as_text=True))
    admin.post("/admin/login", data={"csrf_token": token, "username": "alice", "password": ADMIN_PASSWORD})
    assert admin.get(f"/admin/s/{SLUG}").status_code == 200
    assert admin.get(f"/admin/api/s/{SLUG}/stats").status_code == 200
    csv = admin.get(f"/admin/s/{SLUG}/export.csv").get_data(as_text=True)
    header, *rows = csv.splitlines()
    assert "sliders" in header.split(",") and any("mushra" in row and "reference" in row for row in rows)
