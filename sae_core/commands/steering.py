"""``steer``, ``steering-eval`` and ``steering-truth``: generate with a feature's direction added,
and judge it (by CLAP, or against the corpus's ground truth)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from artifact_schemas.console import stdout_console
from sae_core.commands._common import option, parse_list, reporting
from sae_core.steering.clap_eval import SteeringEvalConfig, run_steering_eval
from sae_core.steering.generate import SteerConfig, run_steering
from sae_core.truth.steering import SteeringTruthConfig, run_steering_truth


def steer(
    model: str = typer.Option(..., "--model", help="MusicGen directory or hub id."),
    sae: Path = typer.Option(..., "--sae", help="SAE checkpoint directory (its layer is steered)."),
    features_list: str = typer.Option(
        ...,
        "--features",
        help="Comma-separated feature ids (12,40), or top:N = the N kept features "
        "with the largest activations in --features-table.",
    ),
    prompts: Path = typer.Option(..., "--prompts", help="Text file, one prompt per line."),
    out: Path = typer.Option(..., "--out", help="Output directory, e.g. runs/R/steering."),
    seeds: str = option(SteerConfig, "seeds"),
    strengths: str = option(SteerConfig, "strengths"),
    relative: bool = option(SteerConfig, "relative"),
    features_table: Path | None = typer.Option(
        None, "--features-table", help="features.parquet (needed with --relative)."
    ),
    duration: float = option(SteerConfig, "seconds"),
    guidance: float = option(SteerConfig, "guidance_scale"),
    apply_to: str = option(SteerConfig, "apply_to"),
    random_control: bool = option(SteerConfig, "random_control"),
    layer: int | None = typer.Option(None, "--layer", help="Override the SAE's recorded layer."),
    backend: str = option(SteerConfig, "backend"),
    device: str = option(SteerConfig, "device"),
    audio_format: str = option(SteerConfig, "audio_format"),
) -> None:
    """Generate baseline and steered audio with the same prompt, seed and sampling settings.

    At the SAE's layer every generated position gets strength x the feature's unit decoder
    direction (--relative: strength x the feature's max activation, in the model's units).
    A random direction of the same norm is generated as a control. Writes the audio and
    steering.parquet (feature, layer, prompt, seed, strength, path, baseline_path, random_path).

    Example: sae-core steer --model M --sae runs/R/sae/layer_8 --features 12,40 --prompts prompts.txt
    --seeds 0,1 --strengths 0.5,1 --relative --features-table runs/R/features/layer_8/features.parquet
    --out runs/R/steering
    """
    with reporting(config=SteerConfig):
        chosen = (
            features_list
            if features_list.startswith("top:")
            else parse_list(features_list, int, "--features")
        )
        cfg = SteerConfig(
            model, sae, chosen, prompts, out,
            seeds=parse_list(seeds, int, "--seeds"),
            strengths=parse_list(strengths, float, "--strengths"),
            relative=relative, features_table=features_table, seconds=duration, guidance_scale=guidance,
            apply_to=apply_to,  # type: ignore[arg-type]  # the config checks it
            random_control=random_control, layer=layer, backend=backend, device=device,
            audio_format=audio_format,
        )  # fmt: skip
        pairs, plan, steered_layer = run_steering(cfg)
    stdout_console().print(
        f"{len(pairs)} steered generations (+ {len(plan.prompt_list()) * len(plan.seeds)} baselines"
        f"{' + random controls' if random_control else ''}) at layer {steered_layer} in {out}"
    )


def steering_eval(
    run: Path = typer.Argument(..., help="A run directory with steering/, features/ (and labels.parquet)."),
    clap: str = typer.Option(..., "--clap", help="CLAP directory or hub id."),
) -> None:
    """Judge steering without listeners: CLAP similarity of steered vs baseline audio to the
    feature's example clips (audio-audio) and to its best label (text-audio).

    Writes steering/steering_eval.parquet (one row per generation) and prints, per layer, the
    share of features whose steered clips are closer than their baselines (and than the
    random-direction controls).

    Example: sae-core steering-eval runs/R --clap models/clap
    """
    with reporting({"run": "RUN"}):
        _, summary = run_steering_eval(SteeringEvalConfig(run, clap))
    view = Table(title=f"Steering success in {run} (share of features)")
    for col in summary.columns:
        view.add_column(str(col), justify="right")
    for values in summary.itertuples(index=False):
        view.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values))
    stdout_console().print(view)


def steering_truth(
    run: Path = typer.Argument(..., help="A run with concepts/ (sae-core concepts), sae/ and features/."),
    corpus: Path = typer.Option(
        ..., "--corpus", help="The corpus with the ground truth (concepts.csv or tags)."
    ),
    model: str = typer.Option(..., "--model", help="The MusicGen the SAEs were trained on."),
    out: Path | None = typer.Option(None, "--out", help="Output directory; default RUN/steering_truth."),
    strengths: str = option(SteeringTruthConfig, "strengths"),
    seeds: str = option(SteeringTruthConfig, "seeds"),
    prompts_per_feature: int = option(SteeringTruthConfig, "prompts_per_feature"),
    seconds: float = option(SteeringTruthConfig, "seconds"),
    max_features: int | None = option(SteeringTruthConfig, "max_features"),
    device: str = option(SteeringTruthConfig, "device"),
) -> None:
    """Steer every feature matched to a concept on prompts that lack it, and read the concept
    back from the audio: steered vs baseline vs random-direction control, per strength.

    Writes steering_truth.parquet (read and three-way choice shares, spectral-flatness guard,
    the reader's own held-out accuracy), generations.parquet, steering_truth.png/.svg (the
    strength-response figure), the clips and run.json.

    Example: sae-core steering-truth runs/r1 --corpus corpus --model models/mini/musicgen
    """
    with reporting({"run": "RUN"}, SteeringTruthConfig):
        sweep = parse_list(strengths, float, "--strengths"), parse_list(seeds, int, "--seeds")
        cfg = SteeringTruthConfig(
            run,
            corpus,
            model,
            out,
            *sweep,
            prompts_per_feature,
            seconds,
            max_features=max_features,
            device=device,
        )
        summary = run_steering_truth(cfg)
    if summary.empty:
        stdout_console().print(
            f"no feature of {run} is matched to a concept (AUROC >= 0.9): nothing to steer"
        )
        return
    view = Table(title=f"Steering against the truth in {run} (shares of (prompt, seed) cases)")
    columns = ["layer", "feature_id", "concept", "value", "strength", "read_steered", "read_baseline",
               "read_control", "chose_steered", "flatness_ratio", "reader_accuracy"]  # fmt: skip
    for col in columns:
        view.add_column(col, justify="right")
    for values in summary[columns].itertuples(index=False):
        view.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values))
    stdout_console().print(view)
