"""``stimuli-builder``: turn a run directory and a study config into a study package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from artifact_schemas import KNOWN_FILES, ArtifactError, FieldError, as_flag, validate_artifact
from artifact_schemas.console import config_option, print_error, stdout_console, typer_app
from stimuli_builder.build import build_package
from stimuli_builder.check import CheckReport, check_package
from stimuli_builder.example import write_example_run
from stimuli_builder.plan import PowerTargets, plan_config

app = typer_app(
    "stimuli-builder",
    "Build listening-study packages (trial lists, blinded audio, answer key) from the "
    "features, labels and steering pairs that sae-core wrote, or from your own clips.",
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


@app.command()
def build(
    config: Path = typer.Argument(..., help="Study config (TOML); see docs/study-config.md."),
    bundle: Path | None = typer.Option(None, "--bundle", help="sae-core run dir; none for [stimuli]."),
    out: Path = typer.Option(..., "--out", help="Package directory to create (e.g. studies/S)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing package directory."),
) -> None:
    """Build a blinded, balanced study package from a study config and a run directory,
    or from your own clips: a config with [stimuli] names a CSV of them (MUSHRA, sliders).

    Writes OUT/study.json (public: opaque ids, texts, options), OUT/key.json
    (answers and stimulus metadata; stays on the server), OUT/audio/ (loudness-
    normalised clips under random names), OUT/checksums.txt and OUT/run.json.

    Example: stimuli-builder build study.toml --bundle runs/demo --out studies/demo;
    stimuli-builder build mushra.toml --out studies/mushra (docs/study-config.md)
    """

    out_console = stdout_console()
    try:
        manifest, _ = build_package(config, bundle, out, force=force)
    except (ArtifactError, ValueError, FileExistsError) as exc:
        print_error("error", exc)
        raise typer.Exit(1) from exc
    n_clips = len(manifest.clips)
    out_console.print(
        f"built {escape(str(out))}: {len(manifest.lists)} lists, "
        f"{len(manifest.trials)} trials, {n_clips} clips"
    )
    report = _print_check(out)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def check(
    package: Path = typer.Argument(..., help="Study package directory (from 'stimuli-builder build')."),
) -> None:
    """Validate a study package and print a summary table per list.

    Checks that every file is present and matches checksums.txt and study.json,
    that clip durations agree, that features are balanced across lists (max - min
    <= 1 per trial type), that candidate positions are balanced per feature
    (steered first in 0.5 of presentations, +- one), that the server's shuffle can
    honour the order rules, and that nothing in study.json or the audio file names
    reveals the key. Prints every no-listening strategy (position, base rate, rated
    labels, file size, duration, repeated audio) with its expected accuracy; one more
    than 10 points above chance, and beyond luck on its trials (binomial p < 0.05), is a
    leak. Exits 1 on any problem.

    Example: stimuli-builder check studies/demo
    """
    try:
        report = _print_check(package)
    except ArtifactError as exc:
        print_error("invalid", exc)
        raise typer.Exit(1) from exc
    if not report.ok:
        raise typer.Exit(1)


def _print_check(package: Path) -> CheckReport:

    out = stdout_console()
    report = check_package(package)
    kinds = sorted({k for s in report.lists for k in s.counts})
    table = Table(title=f"study {report.study_id}: trials per list (main phase)")
    for col in ("list", *kinds, "features"):
        table.add_column(col, justify="right")
    for s in report.lists:
        table.add_row(s.list_id, *(str(s.counts.get(k, 0)) for k in kinds), str(s.features))
    out.print(table)
    for kind, spread in sorted(report.balance_spread.items()):
        out.print(f"balance {kind}: max-min presentations per feature across lists = {spread}")
    if report.steered_first:
        fr = list(report.steered_first.values())
        tol = 1 / min(report.steering_presentations.values())
        out.print(
            f"steered clip first: {min(fr):.2f}-{max(fr):.2f} of presentations per feature (expected "
            f"{1 / report.steering_candidates:.2f} +- one presentation = {tol:.2f}, "
            f"{report.steering_candidates} candidates per trial)"
        )
    _print_strategies(report)
    out.print(f"blinding leaks: {len(report.blinding_leaks)}")
    for problem in report.problems:
        print_error("problem", problem)
    out.print("[green]package ok[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]")
    return report


def _print_strategies(report: CheckReport) -> None:

    table = Table(title="no-listening strategies: expected accuracy from study.json and the audio files")
    for col in ("trial type", "strategy", "trials", "accuracy", "chance", ""):
        table.add_column(col, justify="left" if col in ("trial type", "strategy") else "right")
    for r in report.strategies:
        verdict = "[red]LEAK[/]" if r.leak else "ok"
        row = (r.trial_type, r.strategy, str(r.trials), f"{r.accuracy:.3f}", f"{r.chance:.3f}", verdict)
        table.add_row(*row)
    if report.strategies:
        stdout_console().print(table)


_PLAN_COLUMNS: dict[str, Callable[[Any], str]] = {
    "trial type": lambda r: r.kind,
    "features": lambda r: str(r.features),
    "chance": lambda r: "-" if r.chance is None else f"{r.chance:.3f}",
    "effect": lambda r: f"d={r.effect}" if r.chance is None else f"{r.effect:.2f}",
    "alpha/test": lambda r: f"{r.alpha_per_test:.4f}",
    "responses/feature": lambda r: str(r.responses_per_feature),
    "lists/feature": lambda r: str(r.lists_per_feature),
    "participants/list": lambda r: str(r.participants_per_list),
    "participants total": lambda r: str(r.participants_total),
    "power": lambda r: f"{r.power:.3f}",
}


@app.command()
def plan(
    config: Path = typer.Argument(..., help="Study config (TOML)."),
    effect: float = config_option(PowerTargets, "effect", "--effect"),
    bundle: Path | None = typer.Option(
        None, "--bundle", help="Run directory: count the features it selects."
    ),
    features: int | None = typer.Option(None, "--features", help="Number of features (instead of --bundle)."),
    alpha: float = config_option(PowerTargets, "alpha", "--alpha"),
    power: float = config_option(PowerTargets, "power", "--power"),
    rating_d: float = config_option(PowerTargets, "rating_d", "--rating-d"),
    slider_d: float = config_option(PowerTargets, "slider_d", "--slider-d"),
    abx_correct: float = config_option(PowerTargets, "abx_correct", "--abx-correct"),
    abx_sd: float = config_option(PowerTargets, "abx_sd", "--abx-sd"),
) -> None:
    """Participants per list needed to detect EFFECT accuracy vs chance for every feature.

    Exact one-sided binomial test per feature at alpha/m (Holm's first step, so
    the power holds for every feature); ratings use a one-sample t test against
    the scale midpoint. Give --bundle (features are selected as 'build' would)
    or --features N.

    A study of your own clips ([stimuli] in the config) is sized per condition
    from its conditions CSV: MUSHRA and slider trials by a paired t test of
    effect size --slider-d, ABX by a t test of the participants' proportions
    correct (--abx-correct, --abx-sd) against 1/2; no --bundle.

    Example: stimuli-builder plan study.toml --bundle runs/demo --effect 0.65
    """

    try:
        targets = PowerTargets(effect, alpha, power, rating_d, slider_d, abx_correct, abx_sd)
        result = plan_config(config, targets, bundle, features)
    except (ArtifactError, ValueError) as exc:  # a FieldError names its flag
        print_error("error", exc.render(as_flag) if isinstance(exc, FieldError) else exc)
        raise typer.Exit(1) from exc
    table = Table(title=f"power: {result.tested}, {result.lists} lists, alpha {alpha} (Holm), power {power}")
    for col in _PLAN_COLUMNS:
        table.add_column(col.replace("feature", result.unit), justify="right")
    for r in result.rows:
        table.add_row(*(show(r) for show in _PLAN_COLUMNS.values()))
    stdout_console().print(table)
    needed = max(r.participants_per_list for r in result.rows)
    stdout_console().print(f"participants per list needed: {needed} (total {needed * result.lists})")


@app.command("example-run")
def example_run(
    out: Path = typer.Argument(..., help="Directory to write the example run into."),
) -> None:
    """Write a small synthetic run directory (tones, not model features) to try the tools on.

    It has the files sae-core stages write: features/layer_{1,3}/ with example
    clips, labels.parquet (two labelers) and steering/ (pairs with random
    controls). Use a real run for a real study.

    Example: stimuli-builder example-run /tmp/run, then
    stimuli-builder build study.toml --bundle /tmp/run --out /tmp/s
    """

    write_example_run(out)
    stdout_console().print(f"wrote an example run to {escape(str(out))}")


def main() -> None:
    app()
