"""``study-analysis``: tables and figures from a study export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from analysis.exclusions import ExclusionRules
from analysis.responses import load_responses, response_summary, save_summary
from analysis.run import ReportConfig, run_report
from analysis.sliders import PostScreening
from artifact_schemas import ArtifactError, FieldError, as_flag
from artifact_schemas.console import config_option, print_error, stdout_console, typer_app

# Config fields whose flag is not the field's name with dashes (tests/test_thin_commands.py
# says why each is renamed).
FLAGS = {
    "min_attention_correct": "--min-attention",
    "min_median_rt_ms": "--min-median-rt",
    "reference_below": "--mushra-reference-below",
    "anchor_above": "--mushra-anchor-above",
    "max_share": "--mushra-max-share",
}


def _flag(field: str) -> str:
    return FLAGS.get(field) or as_flag(field)


def _option(config: type, field: str) -> Any:
    """The option of a config field: flag, default, help and range from the field."""
    return config_option(config, field, _flag(field))


app = typer_app(
    "study-analysis",
    "Analyse listening-study exports: exclusions, accuracy against chance, agreement, "
    "CLAP-vs-human correlations, report.",
)


@app.command()
def summary(
    export: Path = typer.Argument(..., help="responses.csv or responses.parquet from study-app."),
    out: Path | None = typer.Option(None, "--out", help="Also write the table as CSV here."),
) -> None:
    """Validate an export and print participants, responses and accuracy per trial kind.

    Example: study-analysis summary exports/responses.csv
    """
    try:
        table = response_summary(load_responses(export))
    except ArtifactError as exc:
        print_error("invalid export", exc)
        raise typer.Exit(1) from exc
    view = Table(title=f"Responses in {export}")
    for col in table.columns:
        view.add_column(str(col))
    for row in table.itertuples(index=False):
        view.add_row(*("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    stdout_console().print(view)
    if out is not None:
        save_summary(table, out)


def main() -> None:
    app()


@app.command()
def report(
    out: Path = typer.Option(..., "--out", help="Directory for tables/, figures/, report.html, report.json."),
    export: Path | None = typer.Option(
        None, "--export", help="responses.csv or .parquet from 'study-app export'."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", help="Read the study app's database instead of an export (needs --study-id)."
    ),
    study_id: str | None = typer.Option(None, "--study-id", help="Study to read with --database-url."),
    study: Path | None = typer.Option(
        None, "--study", help="Study package (for the title and option count)."
    ),
    n_options: int | None = typer.Option(
        None,
        "--n-options",
        help="Options per label-choice trial (chance = 1/N), for an export without its n_options column.",
    ),
    min_attention: float = _option(ExclusionRules, "min_attention_correct"),
    min_median_rt: float = _option(ExclusionRules, "min_median_rt_ms"),
    keep_incomplete: bool = typer.Option(
        False, "--keep-incomplete", help="Keep sessions that did not finish."
    ),
    bayes: bool = _option(ReportConfig, "bayes"),
    stars_on_simulated: bool = _option(ReportConfig, "stars_on_simulated"),
    reference_below: float = _option(PostScreening, "reference_below"),
    anchor_above: float = _option(PostScreening, "anchor_above"),
    anchor_rule: bool = typer.Option(
        True, "--mushra-anchor-rule/--no-mushra-anchor-rule", help="Apply the anchor rule at all."
    ),
    max_share: float = _option(PostScreening, "max_share"),
) -> None:
    """Write the full report: tables (CSV, Markdown, LaTeX), figures (PNG, SVG), report.html, report.json.

    Example: study-analysis report --export exports/demo.parquet --study studies/demo --out reports/demo
    """
    try:
        rules = ExclusionRules(
            min_attention_correct=min_attention,
            min_median_rt_ms=min_median_rt,
            incomplete=not keep_incomplete,
        )
        screening = PostScreening(reference_below, anchor_above if anchor_rule else None, max_share)
    except FieldError as exc:
        print_error("invalid option", exc.render(_flag))
        raise typer.Exit(2) from exc
    try:
        cfg = ReportConfig(
            out, export, database_url, study_id, study, n_options, rules, bayes, stars_on_simulated, screening
        )
        path, built = run_report(cfg)
    except ArtifactError as exc:
        print_error("invalid input", exc)
        raise typer.Exit(1) from exc
    except FieldError as exc:  # e.g. an old export that does not say its trials' options
        print_error("invalid option", exc.render(_flag))
        raise typer.Exit(2) from exc
    if built.meta["data_source"] == "simulated":
        stdout_console().print("data source: simulated participants (study-app simulate's bots)")
    stdout_console().print(f"report: {path} ({len(built.tables)} tables, {len(built.figures)} figures)")
