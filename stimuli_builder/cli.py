"""``stimuli-builder``: turn a run directory and a study config into a study package."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from artifact_schemas import KNOWN_FILES, ArtifactError, validate_artifact
from artifact_schemas.console import print_error, stdout_console, typer_app

app = typer_app(
    "stimuli-builder",
    "Build listening-study packages (trial lists, blinded audio, answer key) from the "
    "features, labels and steering pairs that sae-core wrote.",
)


@app.command()
def validate(
    paths: list[Path] = typer.Argument(..., help="Artifact files, or directories to search."),
) -> None:
    """Check artifact files against their schemas (see docs/formats.md).

    The kind of each file comes from its name: study.json, key.json, run.json,
    metadata.csv, concepts.csv, index.parquet, features.parquet, examples.parquet,
    labels.parquet, steering.parquet, responses.csv/.parquet. Directories are
    searched for those names. Exits 1 if any file is invalid, naming the file and field.

    Example: stimuli-builder validate studies/demo runs/demo/labels.parquet
    """
    out = stdout_console()
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.name in KNOWN_FILES)
        else:
            files.append(p)
    if not files:
        print_error("error", f"no artifact files found in {', '.join(map(str, paths))}")
        raise typer.Exit(1)
    failed = 0
    for f in files:
        try:
            out.print(f"[green]ok[/] {escape(f'{f}: {validate_artifact(f)}')}", highlight=False)
        except ArtifactError as exc:
            failed += 1
            print_error("invalid", exc)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()
