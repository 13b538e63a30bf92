"""``features``, ``concepts``, ``label``, ``summarize``: what each SAE feature is."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from artifact_schemas.console import stdout_console
from sae_core.commands._common import option, parse_layer_numbers, reporting
from sae_core.features.stage import ExampleSelection, FeatureFilters, FeaturesConfig, run_features
from sae_core.labels.stage import LabelConfig, label_features
from sae_core.summary import summarize_run
from sae_core.truth.concepts import ConceptsConfig, findings, layer_means, run_concepts


def features(
    sae: Path = typer.Option(..., "--sae", help="SAE checkpoint directory (sae-core train --out)."),
    acts: Path | None = typer.Option(None, "--acts", help="The same layer's activations (sae-core extract)."),
    corpus: Path = typer.Option(..., "--corpus", help="The corpus the activations came from."),
    model: str | None = typer.Option(
        None, "--model", help="Instead of --acts: run this model over --corpus (after online training)."
    ),
    backend: str = option(FeaturesConfig, "backend", help="With --model: transformers or audiocraft."),
    window_seconds: float | None = typer.Option(
        None, "--window-seconds", help="With --model; default: the online training's, else 10."
    ),
    batch_seconds: float | None = typer.Option(
        None, "--batch-seconds", help="With --model: audio per forward; default: the training's, else 40."
    ),
    text_condition: str | None = typer.Option(
        None, "--text-condition", help="With --model: empty or caption; default: the training's, else empty."
    ),
    device: str = option(
        FeaturesConfig, "device", help="With --model: cpu, cuda (under torchrun: each rank's)."
    ),
    out: Path = typer.Option(..., "--out", help="Output directory, e.g. runs/R/features/layer_8."),
    top: int = option(ExampleSelection, "top"),
    clip_seconds: float = option(ExampleSelection, "clip_seconds"),
    min_frequency: float = option(FeatureFilters, "min_frequency"),
    max_frequency: float = option(FeatureFilters, "max_frequency"),
    min_tracks: int = option(FeatureFilters, "min_tracks"),
    min_max_activation: float = option(FeatureFilters, "min_max_activation"),
    lufs: float = option(FeaturesConfig, "lufs"),
    audio_format: str = option(FeaturesConfig, "audio_format"),
) -> None:
    """Feature statistics, filters and top-activating example clips for one layer.

    Writes features.parquet (frequency, mean/max activation, distinct tracks among the top
    examples, activation histogram, kept + filter_reason), examples.parquet and clips/
    (loudness-normalised windows around each kept feature's top activations, at most one
    per track per window) and run.json.

    Example: sae-core features --sae runs/R/sae/layer_8 --acts runs/R/acts/layer_8 --corpus corpus
    --out runs/R/features/layer_8

    Without stored activations (online training), --model runs the model over the corpus
    instead; under torchrun each rank runs every N-th track and rank 0 merges and writes:
    torchrun --nproc_per_node=4 -m sae_core features --sae runs/R/sae/layer_12 --model M
    --corpus corpus --out runs/R/features/layer_12 --device cuda
    """
    with reporting():
        filters = FeatureFilters(min_frequency, max_frequency, min_tracks, min_max_activation)
        selection = ExampleSelection(top=top, clip_seconds=clip_seconds)
        cfg = FeaturesConfig(
            sae, acts, corpus, out, filters, selection, lufs, audio_format, model=model, backend=backend,
            window_seconds=window_seconds, batch_seconds=batch_seconds, text_condition=text_condition,
            device=device,
        )  # fmt: skip
        written = run_features(cfg)
    if written is None:
        return  # a rank other than 0 under torchrun: rank 0 reports
    table, examples = written
    reasons = table["filter_reason"].value_counts().to_dict()
    dropped = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"
    stdout_console().print(
        f"{int(table['kept'].sum())} of {len(table)} features kept (dropped: {dropped}); "
        f"{len(examples)} example clips in {out / 'clips'}"
    )


def concepts(
    run: Path = typer.Argument(..., help="A run directory with acts/ and sae/ (sae-core extract, train)."),
    corpus: Path = typer.Option(..., "--corpus", help="The corpus the activations came from."),
    layers: str | None = typer.Option(None, "--layers", help="Comma-separated layers; default: all."),
    out: Path | None = typer.Option(None, "--out", help="Output directory; default RUN/concepts."),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help="labels.parquet (sae-core label): do matched features' labels name their concept?",
    ),
    clap: str | None = typer.Option(
        None, "--clap", help="CLAP directory: does it hear matched features' concepts in their clips?"
    ),
) -> None:
    """Score SAE features, neurons and PCA directions as detectors of ground-truth concepts.

    Every concept value of the corpus (concepts.csv, or any tag column of metadata.csv such
    as genre) is a frame-level target; the best unit of each method is chosen on one half
    of the tracks and scored (AUROC, precision, recall) on the other. Writes
    concepts.parquet, concepts_heatmap.png/.svg and run.json.

    Example: sae-core concepts runs/r1 --corpus corpus
    """
    target = out or run / "concepts"
    with reporting({"run": "RUN"}):
        chosen = tuple(parse_layer_numbers(layers)) if layers else None
        cfg = ConceptsConfig(run=run, corpus=corpus, layers=chosen, labels=labels, clap=clap)
        table = run_concepts(cfg, target)
    means = layer_means(table)
    n_values = len(table[["concept", "value"]].drop_duplicates())
    out_table = Table(title=f"Concept detection in {run}: mean AUROC over {n_values} concept values")
    for col in ("layer", *means.columns):
        out_table.add_column(col, justify="right")
    for layer, row in means.iterrows():
        out_table.add_row(str(layer), *(f"{row[c]:.3f}" for c in means.columns))
    console = stdout_console()
    console.print(out_table)
    for line in findings(table, cfg, target):
        console.print(line)
    console.print(f"wrote {target / 'concepts.parquet'} and {target / 'concepts_heatmap.png'}")


def label(
    features_dirs: list[Path] = typer.Option(
        ..., "--features", help="features/layer_<l> directories (repeat)."
    ),
    out: Path = typer.Option(..., "--out", help="labels.parquet to write, e.g. runs/R/labels.parquet."),
    labelers: str = option(LabelConfig, "labelers"),
    corpus: Path | None = typer.Option(None, "--corpus", help="The corpus (descriptors read source audio)."),
    clap: str | None = typer.Option(None, "--clap", help="CLAP directory or hub id (scores every label)."),
    vocabulary: Path | None = typer.Option(None, "--vocabulary", help="clap-vocab terms, one per line."),
    top_n: int = option(LabelConfig, "top_n"),
    manual: Path | None = typer.Option(None, "--manual", help="CSV: feature_id, layer, label[, confidence]."),
    min_agreement: float = option(LabelConfig, "min_agreement"),
    max_features: int | None = option(LabelConfig, "max_features"),
    descriptor_backend: str = option(LabelConfig, "descriptor_backend"),
    llm_model: str = option(LabelConfig, "llm_model"),
    llm_url: str | None = option(LabelConfig, "llm_url"),
    llm_key_env: str = option(LabelConfig, "llm_key_env"),
) -> None:
    """Label features automatically and score every label with CLAP.

    descriptors: tempo, key/mode, brightness, percussiveness, register, density, loudness of
    each example's source audio (librosa; key/mode from essentia by default); a word is
    proposed when enough examples agree.
    clap-vocab: the vocabulary terms CLAP finds closest to the examples. manual: a CSV.
    llm: a multimodal LM (Gemini generateContent protocol) hears the clips and names them;
    needs an API key in $GEMINI_API_KEY (or --llm-key-env); answers are cached on disk.
    With --clap, every label gets clap_score = mean cosine similarity with the feature's
    clips (per-clip values in clap_examples.parquet beside --out).

    Example: sae-core label --features runs/R/features/layer_8 --corpus corpus --clap models/clap
    --out runs/R/labels.parquet
    """
    with reporting({"features": "--features"}):
        cfg = LabelConfig(
            features_dirs, out, [x.strip() for x in labelers.split(",") if x.strip()],
            corpus, clap, vocabulary, top_n, manual, min_agreement, max_features,
            descriptor_backend, llm_model, llm_url, llm_key_env,
        )  # fmt: skip
        table = label_features(cfg)
    counts = table.groupby("labeler").size().to_dict()
    stdout_console().print(
        f"{len(table)} labels for {table[['layer', 'feature_id']].drop_duplicates().shape[0]} "
        f"features ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}) in {out}"
    )


def summarize(
    run: Path = typer.Argument(..., help="A run directory (with features/ and optionally labels.parquet)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write; default RUN/summary."),
) -> None:
    """Figures and a table of a run: mean CLAP score by layer, per-feature best CLAP score with
    the coverage-vs-threshold curve, feature-frequency histogram (PNG + SVG), summary.md.

    Example: sae-core summarize runs/R
    """
    with reporting():
        paths = summarize_run(run, out)
    stdout_console().print(f"wrote {len(paths)} files to {paths[0].parent}")
    stdout_console().print(paths[-1].read_text())
