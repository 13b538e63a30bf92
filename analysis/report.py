"""The study report: every table as CSV, Markdown and LaTeX; figures as PNG and SVG;
one self-contained ``report.html``; and ``report.json`` with every number."""

from __future__ import annotations

import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import clap_human, label_validation, models, steering
from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.lme4 import R_FIT, r_formula
from artifact_schemas import write_text_atomic


@dataclass
class Report:
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)  # name -> SVG text
    pngs: dict[str, bytes] = field(default_factory=dict)  # name -> PNG bytes (same figure)
    meta: dict[str, Any] = field(default_factory=dict)
    # question -> (formula, the rows the models used): written for analysis.R
    model_data: dict[str, tuple[str, str, pd.DataFrame]] = field(default_factory=dict)


def stars(p: float | None) -> str:
    """Significance stars: *** p < .001, ** p < .01, * p < .05."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def build_report(
    responses: pd.DataFrame,
    *,
    title: str = "Study report",
    n_options: int = 4,
    rules: ExclusionRules = ExclusionRules(),
    bayes: bool = True,
    n_boot: int = 200,
) -> Report:
    """Compute every table of the report from an export (see docs/analysis.md)."""
    kept, exclusions = apply_exclusions(responses, rules)
    r = Report(title)

    def add(name: str, table: pd.DataFrame, caption: str) -> None:
        r.tables[name] = table
        r.captions[name] = caption

    add("exclusions", exclusions, "Participants and responses removed by each exclusion rule, in order.")
    add(
        "label_accuracy_by_layer",
        label_validation.choice_accuracy(kept, ["layer"], n_options),
        f"Label choice: accuracy by layer vs chance 1/{n_options} "
        "(Wilson 95% CI, exact binomial test, Holm and BH).",
    )
    add(
        "label_accuracy_by_labeler",
        label_validation.choice_accuracy(kept, ["labeler"], n_options),
        "Label choice: accuracy by labeler.",
    )
    add(
        "label_accuracy_by_feature",
        label_validation.choice_accuracy(kept, ["layer", "feature_id"], n_options),
        "Label choice: accuracy per feature.",
    )
    add(
        "label_ratings",
        label_validation.rating_summary(kept, ["labeler"]),
        "Label ratings by labeler: mean, bootstrap 95% CI, one-sample t test vs the scale midpoint.",
    )
    add(
        "labeler_comparison",
        label_validation.labeler_comparison(kept),
        "The same features rated under each labeler's label: paired difference, d_z, Wilcoxon signed-rank.",
    )
    add(
        "human_vs_automatic",
        label_validation.human_vs_automatic(kept),
        "Features whose most chosen label is the automatic label; Cohen's kappa.",
    )
    add(
        "inter_rater",
        label_validation.inter_rater(kept, n_boot=n_boot),
        "Agreement between participants (95% CIs from resampling items).",
    )
    add(
        "steering_by_feature",
        steering.detection(kept, ["layer", "feature_id"]),
        "Steering detection: share choosing the steered clip per feature vs chance.",
    )
    add("steering_by_strength", steering.detection(kept, ["strength"]), "Steering detection by strength.")
    add(
        "steering_choices",
        steering.choice_counts(kept),
        "Steering: how often each candidate was chosen; chi-square against equal shares.",
    )
    add(
        "steering_strength_model",
        steering.strength_model(kept),
        "Logistic regression of choosing the steered clip on log strength.",
    )
    add(
        "correctness_gee",
        models.gee(kept),
        "One model per question, GEE clustered by participant: label validation "
        "(correct ~ labeler + layer) and steering detection (chose_steered ~ log strength + layer); "
        "each row names its formula, rows and n, and the note says what was left out and the chance level.",
    )
    for d in [*models.designs(kept, n_options=n_options), models.rating_design(kept)]:
        if d.reason is None:
            r.model_data[d.question] = (
                d.formula,
                d.family,
                d.rows[_MODEL_COLUMNS.intersection(d.rows.columns)],
            )
    if bayes:
        add(
            "correctness_ml_glmm",
            models.ml_glmm(kept),
            "The two models by maximum likelihood: binomial GLMMs with random intercepts for participant "
            "and feature (lme4 glmer, Laplace; Wald CIs). analysis.R refits them from model_data/.",
        )
        add(
            "ratings_lmm",
            models.ratings_lmm(kept),
            "Label ratings: rating ~ labeler + layer, a linear mixed model with random intercepts for "
            "participant and feature (lme4 lmer, REML; Wald CIs, normal-approximation p). Coefficients "
            "are differences in rating points. analysis.R refits it from model_data/.",
        )
        add(
            "correctness_bayes_glmm",
            models.bayes_mixed(kept),
            "The same two models as binomial GLMMs with random intercepts for participant and feature "
            "(variational Bayes: posterior mean +- 1.96 sd).",
        )
    add(
        "clap_vs_human",
        clap_human.clap_vs_human(kept, n_perm=1000),
        "CLAP score vs human accuracy and rating per feature: Spearman/Kendall, bootstrap CI, permutation p.",
    )
    add(
        "clap_calibration",
        clap_human.calibration(kept),
        "Human accuracy by CLAP-score bin, and the coverage of each threshold.",
    )
    r.meta = {
        "title": title,
        "responses_in": len(responses),
        "responses_analysed": len(kept),
        "participants_analysed": int(kept["participant"].nunique()) if len(kept) else 0,
        "n_options": n_options,
        "rules": asdict(rules),
    }
    _figures(r, kept)
    return r


_MODEL_COLUMNS = pd.Index(
    ["participant", "feature", "correct", "chose_steered", "rating", "labeler", "layer", "log_strength"]
)

# Rerun outside this tool: R with lme4, in the report directory (Rscript analysis.R).
ANALYSIS_R = (
    """# Refits the report's mixed models from model_data/ (written by study-analysis report).
# Rscript analysis.R   (needs R with lme4: install.packages("lme4"))
"""
    + R_FIT
    + """
models <- read.csv("model_data/models.csv", stringsAsFactors = FALSE)
for (i in seq_len(nrow(models))) {
  d <- read.csv(file.path("model_data", models$file[i]), stringsAsFactors = FALSE)
  formula <- as.formula(paste(models$formula[i], "+ (1 | participant) + (1 | feature)"))
  fit <- fit_model(d, formula, models$family[i])
  cat("\n==", models$question[i], "==\n")
  print(summary(fit))
  out <- file.path("model_data", sub(".csv", "_coef.csv", models$file[i], fixed = TRUE))
  write.csv(coef_table(fit), out, row.names = FALSE)
}
"""
)


def _keep(r: Report, name: str, fig: Any) -> None:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    r.figures[name] = text[text.index("<svg") :]  # inline in report.html: no external file
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=150, bbox_inches="tight")
    r.pngs[name] = png.getvalue()
    plt.close(fig)


def _err(est: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    # Interval ends can sit a rounding error inside the estimate (0 of n: Wilson low = 0).
    low = np.clip(est - table["ci_low"].to_numpy(dtype=float), 0, None)
    high = np.clip(table["ci_high"].to_numpy(dtype=float) - est, 0, None)
    return np.nan_to_num(np.vstack([low, high]))


def _errorbar(ax: Any, table: pd.DataFrame, x: str, label: str) -> None:
    if table.empty:
        ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
        return
    xs = table[x].astype(str)
    est = table["estimate"].to_numpy(dtype=float)
    ax.errorbar(xs, est, yerr=_err(est, table), fmt="o", capsize=4)
    ax.axhline(float(table["chance"].iloc[0]), ls="--", color="grey", label="chance")
    ax.set_ylim(0, 1)
    ax.set_xlabel(label)
    ax.legend()


def _figures(r: Report, kept: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(4, 3))
    _errorbar(ax, r.tables["label_accuracy_by_layer"], "layer", "layer")
    ax.set_ylabel("label accuracy")
    _keep(r, "accuracy_by_layer", fig)

    fig, ax = plt.subplots(figsize=(4, 3))
    _errorbar(ax, r.tables["steering_by_strength"], "strength", "steering strength")
    ax.set_ylabel("chose the steered clip")
    _keep(r, "steering_by_strength", fig)

    fig, ax = plt.subplots(figsize=(4, 3))
    table = clap_human.per_feature(kept).dropna(subset=["accuracy"])
    if len(table) >= 2:
        ax.scatter(table["clap_score"], table["accuracy"])
        if table["clap_score"].nunique() > 1:
            slope, intercept = np.polyfit(table["clap_score"], table["accuracy"], 1)
            xs = np.linspace(table["clap_score"].min(), table["clap_score"].max(), 20)
            ax.plot(xs, slope * xs + intercept, color="grey")
    ax.set_xlabel("CLAP score of the label")
    ax.set_ylabel("human accuracy")
    _keep(r, "clap_vs_human", fig)

    forest = r.tables["label_accuracy_by_feature"]
    fig, ax = plt.subplots(figsize=(4, max(2.0, 0.25 * len(forest) + 1)))
    if not forest.empty:
        labels = forest["layer"].astype(str) + ":" + forest["feature_id"].astype(str)
        est = forest["estimate"].to_numpy(dtype=float)
        ax.errorbar(est, labels, xerr=_err(est, forest), fmt="o", capsize=3)
        ax.axvline(float(forest["chance"].iloc[0]), ls="--", color="grey")
        ax.set_xlim(0, 1)
    ax.set_xlabel("label accuracy (95% CI)")
    _keep(r, "forest_features", fig)


# ------------------------------------------------------------------ rendering


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float | np.floating):
        x = float(v)
        return f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}"
    return str(v)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    p_col = next((c for c in ("p_holm", "p", "p_perm", "p_wilcoxon") if c in shown), None)
    if p_col is not None:
        shown["sig"] = [stars(p) for p in shown[p_col]]
    return shown


def to_markdown(table: pd.DataFrame) -> str:
    shown = _display(table)
    if shown.empty:
        return "_no data_\n"
    head = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def to_latex(table: pd.DataFrame, caption: str) -> str:
    """A booktabs table with significance stars and the n per cell as columns."""
    shown = _display(table)

    def esc(s: Any) -> str:
        return (
            str(s)
            .replace("\\", r"\textbackslash{}")
            .replace("_", r"\_")
            .replace("&", r"\&")
            .replace("%", r"\%")
            .replace("#", r"\#")
        )

    cols = "l" * max(1, len(shown.columns))
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{esc(caption)}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(esc(c) for c in shown.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(_fmt(v)) for v in row) + r" \\" for row in shown.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _json_ready(table: pd.DataFrame) -> list[dict[str, Any]]:
    records = json.loads(table.to_json(orient="records", double_precision=15))
    return list(records)


def write_report(report: Report, out: str | Path) -> Path:
    """Write tables/, figures/, report.html and report.json under ``out``; return report.html."""
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, table in report.tables.items():
        write_text_atomic(out / "tables" / f"{name}.csv", table.to_csv(index=False))
        write_text_atomic(
            out / "tables" / f"{name}.md", f"**{report.captions[name]}**\n\n" + to_markdown(table)
        )
        write_text_atomic(out / "tables" / f"{name}.tex", to_latex(table, report.captions[name]))
    for name, svg in report.figures.items():
        write_text_atomic(out / "figures" / f"{name}.svg", svg)
    for name, png in report.pngs.items():
        (out / "figures" / f"{name}.png").write_bytes(png)
    data = {
        "meta": report.meta,
        "tables": {k: _json_ready(v) for k, v in report.tables.items()},
        "captions": report.captions,
    }
    write_text_atomic(out / "report.json", json.dumps(data, indent=2, allow_nan=False, default=str))
    if report.model_data:
        (out / "model_data").mkdir(exist_ok=True)
        index = []
        for question, (formula, family, rows) in report.model_data.items():
            name = question.replace(" ", "_") + ".csv"
            index.append(
                {"question": question, "formula": r_formula(formula), "family": family, "file": name}
            )
            write_text_atomic(out / "model_data" / name, rows.to_csv(index=False))
        write_text_atomic(out / "model_data" / "models.csv", pd.DataFrame(index).to_csv(index=False))
        write_text_atomic(out / "analysis.R", ANALYSIS_R)
    write_text_atomic(out / "report.html", _html(report))
    return out / "report.html"


def _html(report: Report) -> str:
    parts = [
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p>{report.meta['responses_analysed']} responses from {report.meta['participants_analysed']} "
        f"participants analysed ({report.meta['responses_in']} exported).</p>",
    ]
    for name, table in report.tables.items():
        parts.append(
            f"<h2>{html.escape(name.replace('_', ' '))}</h2><p>{html.escape(report.captions[name])}</p>"
        )
        shown = _display(table)
        if shown.empty:
            parts.append("<p><em>no data</em></p>")
            continue
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
            for row in shown.itertuples(index=False)
        )
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    for name, svg in report.figures.items():
        parts.append(f"<figure>{svg}<figcaption>{html.escape(name.replace('_', ' '))}</figcaption></figure>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{border-bottom:1px solid #ddd;"
        "padding:.2rem .5rem;text-align:right}figure{display:inline-block;margin:1rem}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}'
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
