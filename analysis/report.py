"""The study report: every table as CSV, Markdown and LaTeX; figures as PNG and SVG;
one self-contained ``report.html``; and ``report.json`` with every number."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from analysis import abx, clap_human, label_validation, models, sliders, steering
from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.report_data import Report, ReportInputs, ReportPart
from analysis.report_render import write_report
from artifact_schemas.version import package_version

# Each trial type's analysis is one module with report_tables and report_figures
# (analysis.report_data.ReportPart); the report runs them in this order. A new trial type
# adds its module here: docs/architecture.md has the recipe.
PARTS: tuple[ReportPart, ...] = (label_validation, steering, models, clap_human, sliders, abx)


def build_report(
    responses: pd.DataFrame,
    *,
    title: str = "Study report",
    n_options: int | None = None,
    rules: ExclusionRules = ExclusionRules(),
    bayes: bool = True,
    n_boot: int = 200,
    stars_on_simulated: bool = False,
    clap_line: bool = False,
    rating_midpoint: float = 3.0,
    post_screening: sliders.PostScreening = sliders.PostScreening(),
) -> Report:
    """Compute every table of the report from an export (see docs/analysis.md).

    An export of simulated participants only (``study-app simulate``'s bots, who read
    the answer key) is analysed and said to be so; its tables carry no significance
    stars unless ``stars_on_simulated``. The CLAP-vs-human figure draws a fitted line only
    where the correlation is significant (permutation p < .05), or with ``clap_line``.
    Choices are tested against each trial's chance, 1 / its options (the export's
    ``n_options``; ``n_options`` here only for an export without that column).
    Ratings are tested against ``rating_midpoint`` (3 on a 1-5 scale). MUSHRA and slider
    trials, where the export has any, get their own tables (``sliders.report_tables``); MUSHRA
    assessors are screened by ``post_screening`` (ITU-R BS.1534-3 §4.1.2).
    """
    kept, exclusions = apply_exclusions(responses, rules)
    r = Report(title)
    r.add(
        "exclusions",
        exclusions,
        "Participants and responses removed by each exclusion rule, in order (counts; no test).",
    )
    inputs = ReportInputs(
        kept=kept,
        n_options=n_options,
        rating_midpoint=rating_midpoint,
        post_screening=post_screening,
        bayes=bayes,
        n_boot=n_boot,
        clap_line=clap_line,
    )
    for part in PARTS:
        part.report_tables(r, inputs)
    r.meta = {
        "title": title,
        "responses_in": len(responses),
        "responses_analysed": len(kept),
        "participants_analysed": int(kept["participant"].nunique()) if len(kept) else 0,
        "n_options": label_validation.options_shown(kept, n_options),
        "rating_midpoint": rating_midpoint,
        "rules": asdict(rules),
        **provenance(responses),
    }
    r.meta["stars"] = r.meta["data_source"] != "simulated" or stars_on_simulated
    for part in PARTS:
        part.report_figures(r, inputs)
    return r


def data_source(responses: pd.DataFrame) -> str:
    """``simulated`` (every row a bot's), ``participant`` (none), ``mixed``, or
    ``not recorded`` (an export from before the data_source column)."""
    if "data_source" not in responses or responses["data_source"].isna().all():
        return "not recorded"
    simulated = responses["data_source"].eq("simulated")
    return "simulated" if simulated.all() else "mixed" if simulated.any() else "participant"


def provenance(responses: pd.DataFrame) -> dict[str, Any]:
    """Where the numbers come from: who answered, which package, which software, when."""

    def values(column: str) -> list[str]:
        if column not in responses:
            return []
        return sorted({str(v) for v in responses[column].dropna().unique()})

    exported = values("exported_at")
    source = data_source(responses)
    sessions = responses.drop_duplicates("session_id")
    return {
        "data_source": source,
        "simulated_sessions": int(sessions["data_source"].eq("simulated").sum())
        if "data_source" in sessions
        else None,
        "package_sha256": values("package_sha256"),
        "exported_by": values("software_version"),
        "exported_at": exported[-1] if exported else None,
        "analysed_by": package_version(),
        "analysed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


# Rendering lives in report_render (tables as CSV/Markdown/LaTeX, report.html), the
# figures in report_figures; write_report is re-exported for this module's callers.
__all__ = ["Report", "build_report", "write_report"]
