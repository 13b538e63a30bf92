"""Known truths are recovered; exclusions are counted; the report is complete and self-contained."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.label_validation import choice_accuracy, labeler_comparison
from analysis.report import build_report, write_report
from analysis.simulate import simulate_export
from analysis.steering import detection
from artifact_schemas import RESPONSES, FieldError, save_table

CLI = str(Path(sys.executable).parent / "study-analysis")


def test_true_accuracies_recovered_within_cis_at_the_nominal_rate() -> None:
    truth = np.linspace(0.3, 0.9, 60)
    steer = np.linspace(0.35, 0.8, 60)
    df = simulate_export(120, 60, accuracy=truth, steer_rate=steer, seed=11)
    acc = choice_accuracy(df, ["feature_id"]).set_index("feature_id")
    inside = (acc["ci_low"] <= truth) & (truth <= acc["ci_high"])
    assert 0.88 <= inside.mean() <= 1.0  # 95% intervals: about 57 of 60
    det = detection(df, ["feature_id"]).set_index("feature_id")
    assert 0.88 <= ((det["ci_low"] <= steer) & (steer <= det["ci_high"])).mean() <= 1.0
    # Features far above chance are significant after Holm, those at chance are not.
    assert (acc.loc[truth > 0.6, "p_holm"] < 0.05).all() and (acc.loc[truth < 0.3, "p_holm"] > 0.05).all()


def test_labeler_comparison_finds_the_planted_difference() -> None:
    df = simulate_export(60, 20, seed=2)  # clap-vocab ratings are planted 0.5 lower
    row = labeler_comparison(df).iloc[0]
    assert (row["labeler_a"], row["labeler_b"]) == ("clap-vocab", "descriptors")
    assert row["ci_low"] < row["difference"] < row["ci_high"] < 0
    assert row["p_wilcoxon"] < 0.01 and row["d_z"] < -0.5


def test_exclusion_table_counts_each_rule() -> None:
    df = simulate_export(10, 3, seed=3)
    sessions = df["session_id"].unique()
    df.loc[df["session_id"] == sessions[0], "screening_passed"] = False
    df.loc[df["session_id"] == sessions[1], "attention_correct"] = 0.0
    df.loc[df["session_id"] == sessions[2], "rt_ms"] = 100.0
    df.loc[df["session_id"] == sessions[3], "session_status"] = "abandoned"
    kept, table = apply_exclusions(df, ExclusionRules())
    per_rule = table.set_index("rule")["participants_removed"]
    assert per_rule["failed headphone screening"] == 1
    assert per_rule["attention checks < 50% correct"] == 1
    assert per_rule["median RT < 500 ms"] == 1
    assert per_rule["incomplete session"] == 1
    assert kept["session_id"].nunique() == 6 and table["responses_left"].iloc[-1] == len(kept)


def test_report_command_writes_everything(tmp_path: Path, check_report: Any) -> None:
    export = save_table(simulate_export(30, 8, seed=4), tmp_path / "responses.parquet", RESPONSES)
    out = tmp_path / "report"
    done = subprocess.run(
        [CLI, "report", "--export", str(export), "--out", str(out), "--stars-on-simulated"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # self-contained
    assert page.count("<svg") == 4 and "<table>" in page
    data = json.loads((out / "report.json").read_text())
    assert data["meta"]["responses_analysed"] == 30 * 8 * 4
    assert {
        "label_accuracy_by_layer",
        "steering_choices",
        "inter_rater",
        "clap_vs_human",
        "exclusions",
        "labeler_comparison",
        "correctness_gee",
        "correctness_ml_glmm",
        "ratings_lmm",
    } <= set(data["tables"])
    assert check_report(out / "report.json") == []  # no interval without its estimate, no blank model
    tex = (out / "tables" / "label_accuracy_by_layer.tex").read_text()
    assert (
        "\\toprule" in tex
        and "\\bottomrule" in tex
        and "***" in tex
        and " n " in f" {tex} ".replace("&", " ")
    )
    for name in ("accuracy_by_layer", "steering_by_strength", "clap_vs_human", "forest_features"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "figures" / f"{name}.svg").read_text().startswith("<svg")
    csv = pd.read_csv(out / "tables" / "steering_choices.csv")
    assert {"chi2", "p", "n_steered"} <= set(csv.columns)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_every_agreement_interval_contains_its_estimate(seed: int) -> None:
    """Issue 19.1: on the demo export, kappa 0.079 came with [0.089, 0.477]."""
    from analysis.label_validation import inter_rater

    table = inter_rater(simulate_export(30, 8, seed=seed), n_boot=200)
    assert len(table) == 5
    finite = table.dropna(subset=["estimate"])
    assert (finite["ci_low"] <= finite["estimate"]).all() and (finite["estimate"] <= finite["ci_high"]).all()


def test_models_are_identified_per_question_and_say_what_they_left_out() -> None:
    """Issue 19.2: one model over both trial types aliased C(trial_type) with C(labeler)[none];
    the GEE table came out blank and the GLMM printed two equal coefficients."""
    from analysis.models import bayes_mixed, designs, gee

    df = simulate_export(30, 8, seed=4)
    for table in (gee(designs(df)), bayes_mixed(designs(df))):
        assert set(table["question"]) == {"label validation", "steering detection"}
        assert table["coef"].notna().all() and table["formula"].notna().all() and (table["n"] > 0).all()
        for _, rows in table.groupby("question"):
            assert rows["coef"].round(6).is_unique  # no aliased twins
    # Labeler and layer perfectly confounded: the second term is dropped, and said so.
    choice = df["trial_type"] == "label_choice"
    confounded = df.assign(labeler=np.where(df["layer"] == df["layer"].min(), "descriptors", "clap-vocab"))
    confounded.loc[~choice, "labeler"] = None
    table = gee(designs(confounded))
    label = table[table["question"] == "label validation"]
    assert (
        label["formula"].iloc[0] == "correct ~ C(labeler)"
        and "C(layer) dropped: aliased" in label["note"].iloc[0]
    )
    # Nothing to model: one line that says why, not an empty table.
    flat = df.assign(correct=np.where(choice, True, df["correct"]))
    row = gee(designs(flat)).query("question == 'label validation'")
    assert (
        len(row) == 1 and row["term"].iloc[0] == "(not fitted)" and "nothing to model" in row["note"].iloc[0]
    )


def test_a_bayes_fit_that_did_not_converge_says_so_in_its_table() -> None:
    """statsmodels only warns on stderr ("VB fitting did not converge", seen on the 100k
    benchmark export); the table, which is what a reader sees, must say it too."""
    from analysis.models import bayes_mixed_one, designs

    df = simulate_export(40, 12, seed=3)
    stopped = [bayes_mixed_one(d, max_iterations=2) for d in designs(df)]
    finished = [bayes_mixed_one(d) for d in designs(df)]
    assert all("variational Bayes did not converge" in t["note"].iloc[0] for t in stopped)
    assert not any("did not converge" in t["note"].iloc[0] for t in finished)
    # Chance is on the coefficients' scale, where a reader compares the intercept with it.
    assert "chance 0.25, log-odds -1.10" in finished[0]["note"].iloc[0]


def test_every_model_table_of_a_three_option_study_gives_its_chance() -> None:
    """The model tables built their own designs with the default of 4 options: a study
    with 2 foils got "chance 0.25" under its GEE and GLMMs while the accuracy tables said 1/3."""
    from analysis.report import build_report

    df = simulate_export(30, 8, n_options=3, seed=4)
    report = build_report(df, n_boot=20)  # the export's n_options, nothing given
    for name in ("correctness_gee", "correctness_ml_glmm", "correctness_bayes_glmm"):
        label = report.tables[name].query("question == 'label validation'")
        assert (label["note"].str.contains("chance 0.333, log-odds -0.69")).all(), name
    assert set(report.model_data) == {"label validation", "steering detection", "label ratings"}


def test_chance_is_each_trials_own_and_never_assumed(tmp_path: Path) -> None:
    """n_options was re-defaulted to 4 in five places, and a three-way steering test where
    nobody chose the random control was read as two-way (chance 1/2). The export now says
    how many options each trial offered."""
    df = simulate_export(20, 6, n_options=3, steer_rate=np.ones(6), seed=5)  # 3 clips, control never chosen
    assert set(detection(df, ["layer"])["chance"].round(3)) == {0.333}
    assert set(choice_accuracy(df, ["layer"])["chance"].round(3)) == {0.333}
    report = build_report(df, bayes=False, n_boot=20)
    assert report.meta["n_options"] == 3 and "vs chance 1/3" in report.captions["label_accuracy_by_layer"]
    # An export from before the column: the chance level is asked for, not assumed.
    old = df.assign(n_options=pd.NA)
    with pytest.raises(FieldError, match="n_options is needed") as refused:
        build_report(old, bayes=False, n_boot=20)
    assert refused.value.field == "n_options" and refused.value.other == "study"
    save_table(old, tmp_path / "old.parquet", RESPONSES)
    done = subprocess.run(
        [
            CLI,
            "report",
            "--export",
            str(tmp_path / "old.parquet"),
            "--out",
            str(tmp_path / "r"),
            "--no-bayes",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2 and "--n-options is needed" in done.stderr and "or --study" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r" / "report.html").exists()
    given = build_report(old, n_options=5, bayes=False, n_boot=20)
    assert given.meta["n_options"] == 5 and set(given.tables["label_accuracy_by_layer"]["chance"]) == {0.2}
    # Steering rows of an old export still fall back to the roles chosen: only 2 seen here.
    assert set(detection(old, ["layer"])["chance"]) == {0.5}


def test_a_report_on_simulated_participants_says_so_and_prints_no_stars(tmp_path: Path) -> None:
    """Bots that read the answer key gave "label accuracy 0.702 ***" in the demo report,
    with nothing saying the data were simulated (issue 34.3)."""
    df = simulate_export(30, 8, seed=4)
    assert (df["data_source"] == "simulated").all()
    report = build_report(df, bayes=False, n_boot=20)
    assert report.tables["label_accuracy_by_layer"]["p"].min() < 0.001  # stars would be due
    write_report(report, tmp_path / "sim")
    page = (tmp_path / "sim" / "report.html").read_text()
    assert "Simulated participants." in page.split("<h2>")[0]  # at the top, before any table
    tables = (tmp_path / "sim" / "tables").glob("*.*")
    assert not any("*" in t.read_text().replace("**", "") for t in tables if t.suffix in (".md", ".tex"))
    meta = json.loads((tmp_path / "sim" / "report.json").read_text())["meta"]
    assert meta["data_source"] == "simulated" and meta["stars"] is False
    assert meta["analysed_by"] and meta["analysed_at"]

    # The same responses from participants: stars, no banner.
    real = build_report(df.assign(data_source="participant"), bayes=False, n_boot=20)
    write_report(real, tmp_path / "real")
    assert "***" in (tmp_path / "real" / "tables" / "label_accuracy_by_layer.md").read_text()
    assert "Simulated participants." not in (tmp_path / "real" / "report.html").read_text()


def test_bots_beside_participants_are_left_out_and_counted() -> None:
    df = simulate_export(10, 3, seed=3)
    bots = df["session_id"].isin(df["session_id"].unique()[:4])
    df["data_source"] = np.where(bots, "simulated", "participant")
    kept, table = apply_exclusions(df, ExclusionRules())
    per_rule = table.set_index("rule")["participants_removed"]
    assert per_rule["simulated session (bots beside participants)"] == 4
    assert not kept["data_source"].eq("simulated").any()
    assert build_report(df, bayes=False, n_boot=20).meta["data_source"] == "mixed"


def test_a_trial_type_added_in_one_module_reaches_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new trial type's analysis is one module with report_tables and report_figures,
    named once in analysis.report.PARTS (issue 36; docs/architecture.md's recipe): its
    table, caption and figure reach tables/, report.json and report.html with nothing
    else changed, after the parts before it, and it reads the responses left after the
    exclusions."""
    import types

    from analysis import report as report_module
    from analysis.report_figures import keep
    from artifact_schemas.figures import subplots

    seen: dict[str, int] = {}

    def report_tables(r: Any, inputs: Any) -> None:
        seen["rows"] = len(inputs.kept)
        seen["tables_before"] = len(r.tables)
        r.add(
            "loudness_ratings",
            pd.DataFrame({"condition": ["loud"], "mean": [61.5]}),
            "Loudness per condition.",
        )

    def report_figures(r: Any, inputs: Any) -> None:
        fig, ax = subplots(figsize=(3, 2))
        ax.bar(["loud"], [61.5])
        keep(r, "loudness_scores", fig)

    part = types.SimpleNamespace(report_tables=report_tables, report_figures=report_figures)
    monkeypatch.setattr(report_module, "PARTS", (*report_module.PARTS, part))
    df = simulate_export(12, 4, seed=5)
    df.loc[df["session_id"] == df["session_id"].iloc[0], "rt_ms"] = 100.0  # one participant excluded
    report = build_report(df, bayes=False, n_boot=20)
    assert 0 < seen["rows"] < len(df)
    assert list(report.tables)[-1] == "loudness_ratings" and seen["tables_before"] > 10
    out = tmp_path / "report"
    write_report(report, out)
    assert (out / "tables" / "loudness_ratings.csv").read_text().splitlines()[1] == "loud,61.5"
    saved = json.loads((out / "report.json").read_text())
    assert (
        "loudness_ratings" in saved["tables"]
        and saved["captions"]["loudness_ratings"] == "Loudness per condition."
    )
    page = (out / "report.html").read_text()
    assert "Loudness per condition." in page and "<figcaption>loudness scores</figcaption>" in page


def test_a_note_in_a_table_reads_as_a_sentence_not_a_word_per_line(tmp_path: Path) -> None:
    """The models' notes (a sentence each) were squeezed by the numbers beside them into a
    column one word wide: three rows of the GEE table ran to a screen and a half. A cell
    with a sentence gets a column wide enough to read, and a wide table scrolls inside the
    page instead of past its edge."""
    report = build_report(simulate_export(12, 4, seed=5), bayes=False, n_boot=20)
    write_report(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    notes = report.tables["correctness_gee"]["note"].astype(str)
    assert notes.str.len().max() > 60
    cells = re.findall(r'<td class="text">([^<]*)</td>', page)
    assert cells and any(note.replace("'", "&#39;") in cells for note in notes)
    assert not any(re.fullmatch(r"[-0-9.e]+", c) for c in cells)  # numbers keep their own width
    assert page.count('<div class="wide"><table>') == sum(1 for t in report.tables.values() if len(t))


def test_a_study_whose_build_left_label_choice_out_has_a_clean_report(
    tmp_path: Path, check_report: Any
) -> None:
    # The build leaves label choice out when no label's base rate can be kept at chance (the
    # demo's labels can do that): the study asks ratings and steering only. Its report has no
    # label-choice table, no label-validation model and no CLAP calibration, each named as
    # not in this study, and nothing empty that does not say why.
    export = simulate_export(20, 6, seed=7)
    export = export[export["trial_type"] != "label_choice"].reset_index(drop=True)
    report = build_report(export, n_boot=20)
    write_report(report, tmp_path / "r")
    assert check_report(tmp_path / "r" / "report.json") == []
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert {"label_ratings", "steering_by_feature", "ratings_lmm", "clap_vs_human"} <= set(data["tables"])
    assert {r["question"] for r in data["tables"]["correctness_gee"]} == {"steering detection"}
    gone = {"label_accuracy_by_layer", "human_vs_automatic", "clap_calibration"}
    assert not gone & set(data["tables"]) and gone <= set(data["not_in_this_study"])
    page = (tmp_path / "r" / "report.html").read_text()
    assert "label accuracy by layer" in page.split('id="absent"')[1]
    assert not (tmp_path / "r" / "tables" / "label_accuracy_by_layer.csv").exists()
