"""Rendering a computed :class:`~analysis.report_data.Report`: every table as CSV, Markdown
(a Jinja template) and LaTeX (pandas' ``Styler.to_latex``, booktabs), the figures as
files, ``report.json``, ``analysis.R`` with the models' data, and one self-contained
``report.html`` (a Jinja template, autoescaped). Every file is written atomically."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from analysis.lme4 import R_FIT, r_formula
from analysis.report_data import Report
from artifact_schemas import write_bytes_atomic, write_text_atomic

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


def stars(p: float | None) -> str:
    """Significance stars: *** p < .001, ** p < .01, * p < .05."""
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float | np.floating):
        x = float(v)
        return f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}"
    return str(v)


def _display(table: pd.DataFrame, with_stars: bool = True) -> pd.DataFrame:
    """The table as shown: significance stars beside the p column (unless the data are
    simulated: :func:`analysis.report.build_report`), every cell formatted."""
    shown = table.copy()
    p_col = next((c for c in ("p_holm", "p", "p_perm", "p_wilcoxon") if c in shown), None)
    if p_col is not None and with_stars:
        shown["sig"] = [stars(p) for p in shown[p_col]]
    shown.columns = [str(c) for c in shown.columns]
    return shown.astype(object).map(_fmt) if len(shown) else shown


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def _rows(table: pd.DataFrame, with_stars: bool = True) -> dict[str, Any]:
    shown = _display(table, with_stars)
    return {"columns": list(shown.columns), "rows": shown.to_numpy().tolist()}


def to_markdown(table: pd.DataFrame, with_stars: bool = True) -> str:
    return _templates().get_template("table.md").render(_rows(table, with_stars)).rstrip("\n") + "\n"


def to_latex(table: pd.DataFrame, caption: str, with_stars: bool = True) -> str:
    """A booktabs table (pandas' Styler) with significance stars and the n per cell as columns."""
    shown = _display(table, with_stars)
    styler = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    return styler.to_latex(
        caption=caption.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&"),
        hrules=True,
        position="ht",
        position_float="centering",
        column_format="l" * max(1, len(shown.columns)),
    )


def _json_ready(table: pd.DataFrame) -> list[dict[str, Any]]:
    records = json.loads(table.to_json(orient="records", double_precision=15))
    return list(records)


def write_report(report: Report, out: str | Path) -> Path:
    """Write tables/, figures/, report.html and report.json under ``out``; return report.html."""
    out = Path(out)
    with_stars = bool(report.meta.get("stars", True))
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, table in report.tables.items():
        write_text_atomic(out / "tables" / f"{name}.csv", table.to_csv(index=False))
        write_text_atomic(
            out / "tables" / f"{name}.md",
            f"**{report.captions[name]}**\n\n" + to_markdown(table, with_stars),
        )
        write_text_atomic(out / "tables" / f"{name}.tex", to_latex(table, report.captions[name], with_stars))
    for name, svg in report.figures.items():
        write_text_atomic(out / "figures" / f"{name}.svg", svg)
    for name, png in report.pngs.items():
        write_bytes_atomic(out / "figures" / f"{name}.png", png)
    data = {
        "meta": report.meta,
        "tables": {k: _json_ready(v) for k, v in report.tables.items()},
        "captions": report.captions,
        # Tables of trial types the study did not ask: left out, named here and on the page.
        "not_in_this_study": report.skipped,
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
    # A table with no rows, or one a part left out (report.skipped: a MUSHRA-only study has
    # no label trials, and a demo whose labels left label choice out no label choices),
    # asks a question this study's trials do not: one line names them all, instead of a
    # heading and "no data" each (issue 36). Empty tables stay in tables/ and report.json.
    tables = [
        {
            "name": name.replace("_", " "),
            "caption": report.captions[name],
            **_rows(table, bool(report.meta.get("stars", True))),
        }
        for name, table in report.tables.items()
        if len(table) or name == "exclusions"
    ]
    absent = [
        name.replace("_", " ")
        for name, table in report.tables.items()
        if not len(table) and name != "exclusions"
    ] + [name.replace("_", " ") for name in report.skipped]
    figures = [{"name": name.replace("_", " "), "svg": svg} for name, svg in report.figures.items()]
    return (
        _templates()
        .get_template("report.html")
        .render(title=report.title, meta=report.meta, tables=tables, absent=absent, figures=figures)
    )
