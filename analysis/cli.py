"""``study-analysis``: tables and figures from a study export."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from analysis.responses import load_responses, response_summary
from artifact_schemas import ArtifactError
from artifact_schemas.console import print_error, stdout_console, typer_app

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
        from artifact_schemas import write_text_atomic

        write_text_atomic(out, table.to_csv(index=False))


def main() -> None:
    app()
