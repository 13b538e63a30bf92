"""``sae-core``: the model-side stages of the pipeline (corpus, activations, SAEs, features)."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.table import Table

from artifact_schemas import ArtifactError, recorded_run
from artifact_schemas.console import print_error, stdout_console, typer_app
from sae_core.numerics import pin_cpu_numerics
from sae_core.synth import synth_corpus

app = typer_app(
    "sae-core",
    "Find concepts in a music generator: build a corpus, record activations, train "
    "sparse autoencoders, label and steer features.",
)


@app.command("synth-corpus")
def synth_corpus_cmd(
    out: Path = typer.Option(..., "--out", help="Directory to write the corpus into."),
    tracks: int = typer.Option(24, "--tracks", min=1, help="Number of tracks."),
    seconds: float = typer.Option(10.0, "--seconds", min=1.0, help="Length of each track (s)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; same seed, same bytes."),
    sample_rate: int = typer.Option(32000, "--sample-rate", help="Hz (MusicGen uses 32000)."),
    audio_format: str = typer.Option("flac", "--format", help="flac or wav (16-bit PCM)."),
) -> None:
    """Render a synthetic music corpus with ground-truth concept tags.

    Each track has a melody, chords, bass and optional drums, with balanced values of
    tempo, key, mode, instrument, register, density, drums and loudness. Writes the audio,
    metadata.csv (one row per track: caption, tags, every concept), concepts.csv (each
    concept's value and time span; drums may enter mid-track) and run.json.

    Example: sae-core synth-corpus --out corpus --tracks 8 --seconds 4 --seed 1
    """
    config = {
        "tracks": tracks,
        "seconds": seconds,
        "sample_rate": sample_rate,
        "format": audio_format,
    }
    try:
        with recorded_run(out, "synth-corpus", config=config, seeds={"seed": seed}):
            rendered = synth_corpus(out, tracks, seconds, seed, sample_rate, audio_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    table = Table(title=f"Synthetic corpus: {len(rendered)} tracks x {seconds:g} s in {out}")
    table.add_column("concept")
    table.add_column("values (tracks)")
    for concept in ("tempo", "mode", "instrument", "register", "density", "drums", "loudness"):
        counts = Counter(getattr(t.concepts, concept) for t in rendered)
        table.add_row(concept, ", ".join(f"{v} ({n})" for v, n in sorted(counts.items())))
    table.add_row("key", f"{len({t.concepts.key for t in rendered})} distinct keys")
    console = stdout_console()
    console.print(table)
    console.print(f"wrote {out / 'metadata.csv'}, {out / 'concepts.csv'}, {out / 'run.json'}")


def _fail(message: str) -> NoReturn:
    print_error("error", message)
    raise typer.Exit(2)


def _parse_list(text: str, kind: type[Any], option: str, what: str = "") -> list[Any]:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"{option}: expected comma-separated {what or kind.__name__ + 's'}, got {text!r}")
    if not values:
        _fail(f"{option}: expected at least one value")
    return values


def _parse_layers(text: str) -> list[int]:
    layers = sorted(set(_parse_list(text, int, "--layers", "layer numbers like 4,8")))
    if min(layers) < 0:
        _fail(f"--layers: expected non-negative layer numbers, got {text!r}")
    return layers


@app.command("tiny-model")
def tiny_model_cmd(
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    backend: str = typer.Option("transformers", "--backend", help="transformers or audiocraft."),
) -> None:
    """Build a tiny random MusicGen (4 layers, d_model 64) and save it like real weights.

    For tests and the demo, where no real weights can be downloaded. Pass the directory to
    any '--model' option (with the same --backend): it loads through exactly the code path
    real checkpoints take (save_pretrained/from_pretrained, or audiocraft's checkpoint files).

    Example: sae-core tiny-model --out models/tiny-musicgen
    """
    if backend == "transformers":
        from sae_core.models import build_tiny_musicgen

        build_tiny_musicgen(out, seed=seed)
    elif backend == "audiocraft":
        try:
            from sae_core.models.audiocraft_musicgen import build_tiny_audiocraft

            build_tiny_audiocraft(out, seed=seed)
        except ImportError as exc:
            _fail(f"--backend audiocraft needs the audiocraft package ({exc}); see docs/models.md")
    else:
        _fail(f"--backend must be transformers or audiocraft, got {backend!r}")
    stdout_console().print(f"saved a tiny random MusicGen ({backend}) to {out}")


@app.command()
def extract(
    model: str = typer.Option(
        ..., "--model", help="MusicGen directory or hub id (e.g. facebook/musicgen-small)."
    ),
    corpus: Path = typer.Option(..., "--corpus", help="Directory of audio files (+ optional metadata.csv)."),
    layers: str = typer.Option(
        ...,
        "--layers",
        help="Comma-separated decoder layers, e.g. 4,8 (0-based), or 'paper': "
        "layer 2, 25%, 50%, 75% depth and the second-to-last layer (Singh et al.).",
    ),
    out: Path = typer.Option(..., "--out", help="Output directory, e.g. runs/R/acts."),
    backend: str = typer.Option("transformers", "--backend", help="transformers or audiocraft."),
    text_condition: str = typer.Option(
        "empty", "--text-condition", help="empty, or caption (metadata.csv captions)."
    ),
    window_seconds: float = typer.Option(
        10.0, "--window-seconds", min=0.1, help="Context window per forward pass."
    ),
    batch_seconds: float = typer.Option(
        40.0, "--batch-seconds", min=0.1, help="Audio seconds per forward batch."
    ),
    tracks_per_shard: int = typer.Option(8, "--tracks-per-shard", min=1, help="Tracks per resumable shard."),
    dtype: str = typer.Option("float16", "--dtype", help="Storage type: float16 or float32."),
    keep_fraction: float = typer.Option(
        1.0, "--keep-fraction", help="Store this share of each window's frames (seeded; e.g. 0.25)."
    ),
    keep_seed: int = typer.Option(0, "--keep-seed", help="Seed of the frames --keep-fraction keeps."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1 ..."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads (same value = same bytes)."
    ),
) -> None:
    """Record residual-stream activations of a corpus at chosen layers.

    Writes layer_<l>/shard_*.safetensors, layer_<l>/index.parquet (track, frame, time of every
    row), layer_<l>/meta.json and run.json. Interrupted runs resume: rerun the same command and
    finished shards are kept. Unreadable audio files are skipped and listed at the end.
    Under 'torchrun --nproc_per_node=N' each rank takes every N-th shard (gloo on CPU).
    --keep-fraction 0.25 stores a seeded quarter of the frames (disk and SAE data shrink
    alike; later stages find each kept row's track and time in the index).

    Example: sae-core extract --model models/tiny --corpus corpus --layers 1,3 --out runs/R/acts
    """
    from sae_core.extract import ExtractConfig
    from sae_core.extract import extract as run_extract
    from sae_core.models import BACKENDS, load_model

    if text_condition not in ("empty", "caption"):
        _fail(f"--text-condition must be empty or caption, got {text_condition!r}")
    if dtype not in ("float16", "float32"):
        _fail(f"--dtype must be float16 or float32, got {dtype!r}")
    if backend not in BACKENDS:
        _fail(f"--backend must be one of {BACKENDS}, got {backend!r}")
    if not corpus.is_dir():
        _fail(f"--corpus {corpus}: no such directory")
    _init_distributed(device, threads)
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per torchrun rank
    try:
        cfg = ExtractConfig(
            model=model,
            layers=[] if layers == "paper" else _parse_layers(layers),
            backend=backend,
            text_condition=text_condition,  # type: ignore[arg-type]  # checked above
            window_seconds=window_seconds,
            batch_seconds=batch_seconds,
            tracks_per_shard=tracks_per_shard,
            dtype=dtype,  # type: ignore[arg-type]  # checked above
            keep_fraction=keep_fraction,
            keep_seed=keep_seed,
        )
    except ValueError as exc:
        _fail(f"--{str(exc).replace('_', '-', 1)}")
    try:
        mg = load_model(model, backend=backend, device=device)
        if layers == "paper":
            cfg.layers = paper_layers(mg.n_layers)
        rank = _rank()
        # Only rank 0 records the run, and only once every shard is there.
        recording = (
            recorded_run(out, "extract", config=asdict(cfg), inputs=[corpus])
            if rank == 0
            else contextlib.nullcontext()
        )
        with recording:
            result = run_extract(mg, cfg, corpus, out)
            if rank == 0 and not result.finished:
                _fail(f"some shards are missing in {out}; rerun the same command to finish")
    except (ValueError, ArtifactError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        print_error("interrupted", f"finished shards are kept in {out}; rerun the same command to resume")
        raise typer.Exit(130) from None
    if rank != 0:
        return
    console = stdout_console()
    console.print(
        f"extracted {result.rows} frames x layers {cfg.layers} ({mg.d_model} dims) to {out}: "
        f"{result.shards_computed} shards computed, {result.shards_reused} reused"
    )
    for item in result.skipped:
        print_error("skipped", item["error"])


def paper_layers(n_layers: int) -> list[int]:
    """Layer 2, 25%, 50% and 75% depth, and the second-to-last layer (Singh et al.)."""
    picks = {2, n_layers // 4, n_layers // 2, (3 * n_layers) // 4, n_layers - 2}
    return sorted(layer for layer in picks if 0 <= layer < n_layers)


def _rank() -> int:
    return int(os.environ.get("RANK", 0))


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _init_distributed(device: str, threads: int | None) -> None:
    import torch

    _set_threads(threads)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")


@app.command()
def train(
    acts: Path = typer.Option(..., "--acts", help="One layer's activations, e.g. runs/R/acts/layer_8."),
    out: Path = typer.Option(..., "--out", help="Checkpoint directory, e.g. runs/R/sae/layer_8."),
    k: int = typer.Option(32, "--k", min=1, help="Active latents per frame (topk, batchtopk)."),
    expansion: int = typer.Option(8, "--expansion", min=1, help="Latents = expansion x d_model."),
    num_latents: int | None = typer.Option(None, "--num-latents", min=1, help="Overrides --expansion."),
    activation: str = typer.Option("topk", "--activation", help="topk, batchtopk or relu (L1)."),
    l1_coefficient: float = typer.Option(5.0, "--l1-coefficient", help="L1 weight (relu only)."),
    batch_size: int = typer.Option(4096, "--batch-size", min=1, help="Frames per step."),
    lr: float | None = typer.Option(None, "--lr", help="Default: 2e-4 / sqrt(latents / 16384)."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.0, help="Passes over the training frames."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Stop after this many frames."),
    holdout: float = typer.Option(0.05, "--holdout", min=0.0, max=0.9, help="Share of tracks held out."),
    seed: int = typer.Option(0, "--seed", min=0),
    checkpoint_every: int = typer.Option(
        1000, "--checkpoint-every", min=0, help="Steps between checkpoints."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str = typer.Option("cpu", "--device"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
) -> None:
    """Train a sparse autoencoder on one layer's activations.

    TopK (Gao et al. 2024) by default, BatchTopK or ReLU+L1 as options; unit-norm decoder,
    AuxK loss for dead latents, b_dec from the data's geometric median, warm-up and linear
    decay. Writes cfg.json + sae.safetensors + metrics.json (FVU, held-out FVU, L0, dead
    fraction) and run.json; --resume continues an interrupted run.

    Example: sae-core train --acts runs/R/acts/layer_8 --out runs/R/sae/layer_8 --k 32 --expansion 8
    """
    from sae_core.sae import ACTIVATIONS, SaeConfig, ShardedActivations, TrainConfig, Trainer

    if not acts.is_dir():
        _fail(f"--acts {acts}: no such directory (expected one layer of 'sae-core extract' output)")
    if activation not in ACTIVATIONS:
        _fail(f"--activation must be one of {ACTIVATIONS}, got {activation!r}")
    _set_threads(threads)  # training runs in one process
    train_cfg = TrainConfig(
        batch_size=batch_size,
        lr=lr,
        epochs=epochs,
        max_tokens=max_tokens,
        holdout_fraction=holdout,
        seed=seed,
        checkpoint_every=checkpoint_every,
    )
    try:
        source = ShardedActivations(acts, holdout_fraction=holdout, buffer_shards=train_cfg.buffer_shards)
        sae_cfg = SaeConfig(
            d_in=source.d_in,
            num_latents=num_latents or expansion * source.d_in,
            k=k,
            activation=activation,
            l1_coefficient=l1_coefficient,
            layer=source.meta.get("layer"),
        )
        config = {"sae": sae_cfg.to_dict(), "train": asdict(train_cfg)}
        with recorded_run(out, "train", config=config, seeds={"seed": seed}, inputs=[acts]):
            metrics = Trainer(sae_cfg, train_cfg, source, out, device=device).fit(resume=resume)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    table = Table(title=f"SAE {acts.name}: {sae_cfg.num_latents} latents, {activation} k={k}")
    for col in ("steps", "frames", "FVU", "held-out FVU", "L0", "dead", "frames/s"):
        table.add_column(col, justify="right")
    table.add_row(
        str(metrics.steps),
        str(metrics.tokens),
        f"{metrics.fvu:.3f}",
        f"{metrics.holdout_fvu:.3f}",
        f"{metrics.l0:.1f}",
        f"{metrics.dead_fraction:.1%}",
        f"{metrics.tokens_per_second:,.0f}",
    )
    stdout_console().print(table)


@app.command()
def features(
    sae: Path = typer.Option(..., "--sae", help="SAE checkpoint directory (sae-core train --out)."),
    acts: Path = typer.Option(..., "--acts", help="The same layer's activations (sae-core extract)."),
    corpus: Path = typer.Option(..., "--corpus", help="The corpus the activations came from."),
    out: Path = typer.Option(..., "--out", help="Output directory, e.g. runs/R/features/layer_8."),
    top: int = typer.Option(10, "--top", min=1, help="Example clips per kept feature."),
    clip_seconds: float = typer.Option(4.0, "--clip-seconds", min=0.1, help="Example clip length."),
    min_frequency: float = typer.Option(0.01, "--min-frequency", min=0.0, max=1.0, help="Drop rarer."),
    max_frequency: float = typer.Option(0.25, "--max-frequency", min=0.0, max=1.0, help="Drop denser."),
    min_tracks: int = typer.Option(2, "--min-tracks", min=1, help="Drop features seen in fewer tracks."),
    min_max_activation: float = typer.Option(
        0.05, "--min-max-activation", min=0.0, help="Drop features weaker than this x the median peak."
    ),
    lufs: float = typer.Option(-23.0, "--lufs", help="Loudness of the clips (LUFS)."),
    audio_format: str = typer.Option("flac", "--format", help="flac or wav."),
) -> None:
    """Feature statistics, filters and top-activating example clips for one layer.

    Writes features.parquet (frequency, mean/max activation, distinct tracks among the top
    examples, activation histogram, kept + filter_reason), examples.parquet and clips/
    (loudness-normalised windows around each kept feature's top activations, at most one
    per track per window) and run.json.

    Example: sae-core features --sae runs/R/sae/layer_8 --acts runs/R/acts/layer_8 --corpus corpus
    --out runs/R/features/layer_8
    """
    from artifact_schemas import EXAMPLES, FEATURES, save_table
    from sae_core.features import ExampleSelection, FeatureFilters, write_features

    for path, name in ((sae, "--sae"), (acts, "--acts"), (corpus, "--corpus")):
        if not path.is_dir():
            _fail(f"{name} {path}: no such directory")
    filters = FeatureFilters(min_frequency, max_frequency, min_tracks, min_max_activation)
    selection = ExampleSelection(top=top, window_seconds=clip_seconds)
    config = {
        "filters": asdict(filters),
        "selection": asdict(selection),
        "lufs": lufs,
        "format": audio_format,
    }
    try:
        with recorded_run(out, "features", config=config, inputs=[sae, acts]):
            table, examples = write_features(sae, acts, corpus, out, filters, selection, lufs, audio_format)
            save_table(table, out / "features.parquet", FEATURES)
            save_table(examples, out / "examples.parquet", EXAMPLES)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    reasons = table["filter_reason"].value_counts().to_dict()
    dropped = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"
    stdout_console().print(
        f"{int(table['kept'].sum())} of {len(table)} features kept (dropped: {dropped}); "
        f"{len(examples)} example clips in {out / 'clips'}"
    )


@app.command()
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
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated sampling seeds."),
    strengths: str = typer.Option("1", "--strengths", help="Comma-separated strengths (alpha)."),
    relative: bool = typer.Option(False, "--relative", help="Strength x the feature's max activation."),
    features_table: Path | None = typer.Option(
        None, "--features-table", help="features.parquet (needed with --relative)."
    ),
    duration: float = typer.Option(8.0, "--duration", min=0.1, help="Seconds of audio per generation."),
    guidance: float = typer.Option(3.0, "--guidance", help="Classifier-free guidance scale (1 = off)."),
    apply_to: str = typer.Option("both", "--apply-to", help="both, or conditional (CFG half only)."),
    random_control: bool = typer.Option(
        True, "--random-control/--no-random-control", help="Also generate a same-norm random direction."
    ),
    layer: int | None = typer.Option(None, "--layer", help="Override the SAE's recorded layer."),
    backend: str = typer.Option("transformers", "--backend", help="transformers or audiocraft."),
    device: str = typer.Option("cpu", "--device"),
    audio_format: str = typer.Option("flac", "--format", help="flac or wav."),
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
    from artifact_schemas import FEATURES, STEERING, load_table, save_table
    from sae_core.models import load_model
    from sae_core.sae import SparseCoder
    from sae_core.steering import SteeringPlan, generate_pairs

    if apply_to not in ("both", "conditional"):
        _fail(f"--apply-to must be both or conditional, got {apply_to!r}")
    from sae_core.audio import WRITE_FORMATS

    if audio_format not in WRITE_FORMATS:
        _fail(f"--format must be one of {sorted(WRITE_FORMATS)}, got {audio_format!r}")
    if not prompts.is_file():
        _fail(f"--prompts {prompts}: no such file")
    prompt_list = [line.strip() for line in prompts.read_text().splitlines() if line.strip()]
    if not prompt_list:
        _fail(f"--prompts {prompts}: no prompts (one per line)")
    chosen: list[int]
    if features_list.startswith("top:"):
        if features_table is None:
            _fail("--features top:N needs --features-table")
        n_top = _parse_list(features_list[4:], int, "--features top:N")[0]
        kept = load_table(features_table, FEATURES).query("kept")
        chosen = kept.nlargest(n_top, "max_activation")["feature_id"].astype(int).tolist()
        if not chosen:
            _fail(f"--features-table {features_table}: no kept features")
    else:
        chosen = _parse_list(features_list, int, "--features")
    plan = SteeringPlan(
        features=chosen,
        prompts=prompt_list,
        seeds=_parse_list(seeds, int, "--seeds"),
        strengths=_parse_list(strengths, float, "--strengths"),
        relative=relative,
        seconds=duration,
        guidance_scale=guidance,
        apply_to=apply_to,  # type: ignore[arg-type]
        random_control=random_control,
        audio_format=audio_format,
    )
    try:
        coder = SparseCoder.load_from_disk(sae)
        steer_layer = layer if layer is not None else coder.cfg.layer
        if steer_layer is None:
            _fail(f"--sae {sae}: the checkpoint does not record its layer; pass --layer")
        betas = None
        if relative:
            if features_table is None:
                _fail("--relative needs --features-table (features.parquet with max_activation)")
            table = load_table(features_table, FEATURES).set_index("feature_id")
            missing = [f for f in plan.features if f not in table.index]
            if missing:
                _fail(f"--features {missing}: not in {features_table}")
            peaks = table["max_activation"].astype(float)
            betas = {f: float(peaks.loc[f]) for f in plan.features}
        seed_record = {f"sampling_{i}": s for i, s in enumerate(plan.seeds)}
        with recorded_run(out, "steer", config=asdict(plan), seeds=seed_record, inputs=[sae]):
            mg = load_model(model, backend=backend, device=device)
            pairs = generate_pairs(mg, coder, steer_layer, plan, out, betas)
            save_table(pairs, out / "steering.parquet", STEERING)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    stdout_console().print(
        f"{len(pairs)} steered generations (+ {len(plan.prompts) * len(plan.seeds)} baselines"
        f"{' + random controls' if random_control else ''}) at layer {steer_layer} in {out}"
    )


@app.command()
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
) -> None:
    """Score SAE features, neurons and PCA directions as detectors of ground-truth concepts.

    Every concept value of the corpus (concepts.csv, or any tag column of metadata.csv such
    as genre) is a frame-level target; the best unit of each method is chosen on one half
    of the tracks and scored (AUROC, precision, recall) on the other. Writes
    concepts.parquet, concepts_heatmap.png/.svg and run.json.

    Example: sae-core concepts runs/r1 --corpus corpus
    """
    import pandas as pd

    from sae_core.concepts import ConceptsConfig, write_concepts

    chosen = tuple(_parse_layers(layers)) if layers else None
    target = out or run / "concepts"
    try:
        cfg = ConceptsConfig(run=run, corpus=corpus, layers=chosen, labels=labels)
        inputs = [run / "sae", corpus, *([labels] if labels else [])]
        with recorded_run(target, "concepts", config={"layers": chosen}, inputs=inputs):
            table, _ = write_concepts(cfg, target)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    means = table.groupby(["layer", "method"])["auroc"].mean().unstack()
    n_values = len(table[["concept", "value"]].drop_duplicates())
    out_table = Table(title=f"Concept detection in {run}: mean AUROC over {n_values} concept values")
    for col in ("layer", *means.columns):
        out_table.add_column(col, justify="right")
    for layer, row in means.iterrows():
        out_table.add_row(str(layer), *(f"{row[c]:.3f}" for c in means.columns))
    console = stdout_console()
    console.print(out_table)
    top = table[table["method"] == "sae"].nlargest(1, "auroc")
    for r in top.itertuples():
        console.print(
            f"best: layer {r.layer} feature {r.unit} detects {r.concept}={r.value} (AUROC {r.auroc:.3f})"
        )
    timed = table[(table["method"] == "sae") & table["onset_error_ms"].notna()]
    for r in timed.itertuples():
        console.print(
            f"layer {r.layer}: {r.concept}={r.value} begins mid-track in {r.n_onsets} tracks; "
            f"detected onset off by {r.onset_error_ms:.0f} ms (median)"
        )
    if labels is not None:
        truth = pd.read_parquet(target / "labels_vs_truth.parquet")
        for labeler, group in truth.groupby("labeler"):
            console.print(
                f"labels: {labeler} names the concept of {int(group['names_concept'].sum())} of "
                f"{len(group)} matched features ({group['names_concept'].mean():.0%})"
            )
    console.print(f"wrote {target / 'concepts.parquet'} and {target / 'concepts_heatmap.png'}")


@app.command("train-codec")
def train_codec_cmd(
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (sae-core synth-corpus)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the codec into."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="16000, 24000 or 32000 (50 frames/s)."),
    codebooks: int = typer.Option(4, "--codebooks", help="Residual codebooks (MusicGen: 4)."),
    codebook_size: int = typer.Option(256, "--codebook-size", help="Entries per codebook."),
    steps: int = typer.Option(3000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(8, "--batch-size", help="Crops per step."),
    crop_seconds: float = typer.Option(1.0, "--crop-seconds", help="Length of each training crop."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak Adam learning rate."),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights and the crops."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
) -> None:
    """Train a small EnCodec (transformers EncodecModel) on a corpus and save it.

    Waveform L1 + multi-resolution STFT and mel losses, residual VQ with EMA codebooks,
    k-means init and dead-code restarts (no adversarial losses). Writes config.json and
    model.safetensors (EncodecModel.from_pretrained loads them), metrics.json with the
    loss curve, trainer_state.pt for --resume, and run.json with the corpus checksum.

    Example: sae-core train-codec --corpus corpus16k --out models/mini-codec --steps 3000
    """
    from sae_core.mini.codec import CodecTrainConfig, train_codec

    _set_threads(threads)
    try:
        cfg = CodecTrainConfig(
            corpus=corpus,
            out=out,
            sample_rate=sample_rate,
            codebooks=codebooks,
            codebook_size=codebook_size,
            steps=steps,
            batch_size=batch_size,
            crop_seconds=crop_seconds,
            lr=lr,
            seed=seed,
            resume=resume,
            device=device,
        )
        with recorded_run(out, "train-codec", config=cfg.record(), seeds={"seed": seed}, inputs=[corpus]):
            metrics = train_codec(cfg)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    usage = ", ".join(f"{u:.0%}" for u in metrics.codebook_usage)
    stdout_console().print(
        f"codec saved to {out}: {metrics.steps} steps, L1 {metrics.l1:.4f}, spectral loss "
        f"{metrics.stft:.3f}, codebook use {usage}"
    )


@app.command("train-musicgen")
def train_musicgen_cmd(
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (captions in metadata.csv)."),
    codec: Path = typer.Option(..., "--codec", help="A trained codec (sae-core train-codec)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    layers: int = typer.Option(4, "--layers", help="Decoder blocks."),
    hidden_size: int = typer.Option(128, "--hidden-size", help="Decoder width (d_model)."),
    steps: int = typer.Option(3000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(4, "--batch-size", help="Tracks per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate."),
    condition_dropout: float = typer.Option(
        0.15, "--condition-dropout", help="Share of examples trained without their caption (for CFG)."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights, the batches and the drops."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
) -> None:
    """Train a mini MusicGen (transformers MusicgenForConditionalGeneration) on a corpus.

    The codec's tokens in the delay pattern, the captions through a small T5 and word
    tokenizer, the condition dropped for --condition-dropout of the examples so that
    classifier-free guidance works. Writes a save_pretrained directory that '--model DIR'
    loads like real weights, metrics.json with the loss curve, run.json and
    trainer_state.pt for --resume.

    Example: sae-core train-musicgen --corpus corpus16k --codec models/mini/codec --out models/mini/musicgen
    """
    from sae_core.mini.musicgen import MusicgenTrainConfig, train_musicgen

    _set_threads(threads)
    try:
        cfg = MusicgenTrainConfig(
            corpus=corpus,
            codec=codec,
            out=out,
            layers=layers,
            hidden_size=hidden_size,
            ffn_dim=4 * hidden_size,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            condition_dropout=condition_dropout,
            seed=seed,
            resume=resume,
            device=device,
        )
        inputs = [corpus, codec]
        with recorded_run(out, "train-musicgen", config=cfg.record(), seeds={"seed": seed}, inputs=inputs):
            metrics = train_musicgen(cfg)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    stdout_console().print(
        f"MusicGen saved to {out}: {metrics.steps} steps, cross-entropy {metrics.loss:.3f} per token"
    )


@app.command("train-clap")
def train_clap_cmd(
    corpus: Path = typer.Option(..., "--corpus", help="A corpus directory (captions in metadata.csv)."),
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    steps: int = typer.Option(3000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Clip-text pairs per step (distinct tracks)."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak AdamW learning rate."),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights, the batches and the texts."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
) -> None:
    """Train a mini CLAP (transformers ClapModel) contrastively on a corpus's clips and texts.

    Each track is paired with its caption or with one to three of its concepts in words
    ("minor key", "flute"), so that zero-shot prompts and the clap-vocab labeler carry
    signal. Writes a save_pretrained directory that '--clap DIR' loads like real weights,
    metrics.json with the loss curve, run.json and trainer_state.pt for --resume.

    Example: sae-core train-clap --corpus corpus --out models/mini/clap --steps 3000
    """
    from sae_core.mini.clap import ClapTrainConfig, train_clap

    _set_threads(threads)
    try:
        cfg = ClapTrainConfig(
            corpus=corpus,
            out=out,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            resume=resume,
            device=device,
        )
        with recorded_run(out, "train-clap", config=cfg.record(), seeds={"seed": seed}, inputs=[corpus]):
            metrics = train_clap(cfg)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    stdout_console().print(
        f"CLAP saved to {out}: {metrics.steps} steps, contrastive loss {metrics.loss:.3f} "
        f"(chance {math.log(cfg.batch_size):.3f})"
    )


@app.command("tiny-clap")
def tiny_clap_cmd(
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    """Build a tiny random CLAP (transformers ClapModel) and save it with save_pretrained.

    For tests and the demo; pass the directory to '--clap', the path real checkpoints
    (e.g. laion/clap-htsat-unfused) take.

    Example: sae-core tiny-clap --out models/tiny-clap
    """
    from sae_core.clap import build_tiny_clap

    build_tiny_clap(out, seed=seed)
    stdout_console().print(f"saved a tiny random CLAP to {out}")


@app.command()
def label(
    features_dirs: list[Path] = typer.Option(
        ..., "--features", help="features/layer_<l> directories (repeat)."
    ),
    out: Path = typer.Option(..., "--out", help="labels.parquet to write, e.g. runs/R/labels.parquet."),
    labelers: str = typer.Option(
        "descriptors,clap-vocab", "--labelers", help="Comma-separated: descriptors, clap-vocab, manual."
    ),
    corpus: Path | None = typer.Option(None, "--corpus", help="The corpus (descriptors read source audio)."),
    clap: str | None = typer.Option(None, "--clap", help="CLAP directory or hub id (scores every label)."),
    vocabulary: Path | None = typer.Option(None, "--vocabulary", help="clap-vocab terms, one per line."),
    top_n: int = typer.Option(3, "--top-n", min=1, help="clap-vocab labels per feature."),
    manual: Path | None = typer.Option(None, "--manual", help="CSV: feature_id, layer, label[, confidence]."),
    min_agreement: float = typer.Option(
        0.6, "--min-agreement", min=0.0, max=1.0, help="descriptors: share of examples that must agree."
    ),
    max_features: int | None = typer.Option(
        None,
        "--max-features",
        min=1,
        help="Label only the N features with the largest activations per layer.",
    ),
    descriptor_backend: str = typer.Option(
        "essentia",
        "--descriptor-backend",
        help="descriptors' key/mode finder: essentia (KeyExtractor) or librosa (chroma profiles).",
    ),
    llm_model: str = typer.Option("gemini-2.5-flash", "--llm-model", help="llm: the model name."),
    llm_url: str | None = typer.Option(None, "--llm-url", help="llm: API base URL (default: Gemini's)."),
    llm_key_env: str = typer.Option(
        "GEMINI_API_KEY", "--llm-key-env", help="llm: env variable with the API key."
    ),
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
    import pandas as pd

    from artifact_schemas import LABELS, save_table
    from sae_core.extract import list_tracks
    from sae_core.labels import (
        DEFAULT_VOCABULARY,
        clap_vocabulary_labels,
        descriptor_labels,
        load_examples,
        manual_labels,
        score_labels,
    )

    chosen = [x.strip() for x in labelers.split(",") if x.strip()]
    unknown = sorted(set(chosen) - {"descriptors", "clap-vocab", "manual", "llm"})
    if unknown or not chosen:
        _fail(f"--labelers: unknown {unknown or chosen}; expected descriptors, clap-vocab, manual, llm")
    if descriptor_backend not in ("librosa", "essentia"):
        _fail(f"--descriptor-backend must be librosa or essentia, got {descriptor_backend!r}")
    if descriptor_backend == "essentia":
        try:
            import essentia  # noqa: F401
        except ImportError:
            _fail(
                "--descriptor-backend essentia needs the essentia package (a dependency: "
                "reinstall the project, or pass --descriptor-backend librosa)"
            )
    llm = None
    if "llm" in chosen:
        key = os.environ.get(llm_key_env, "")
        if not key:
            _fail(f"--labelers llm needs an API key in the environment variable {llm_key_env}")
        from sae_core.llm_labeler import LLMConfig, LLMLabeler

        llm_cfg = LLMConfig(api_key=key, model=llm_model, cache_dir=out.parent / ".llm_cache")
        if llm_url:
            llm_cfg.base_url = llm_url
        llm = LLMLabeler(llm_cfg)
    if "descriptors" in chosen and corpus is None:
        _fail("--labelers descriptors needs --corpus (it analyses the source audio)")
    if "clap-vocab" in chosen and clap is None:
        _fail("--labelers clap-vocab needs --clap")
    if "manual" in chosen and manual is None:
        _fail("--labelers manual needs --manual FILE.csv")
    try:
        from sae_core.clap import ClapScorer

        scorer = ClapScorer.load(clap, cache_dir=out.parent / ".clap_cache") if clap else None
        vocab = (
            DEFAULT_VOCABULARY
            if vocabulary is None
            else [w.strip() for w in vocabulary.read_text().splitlines() if w.strip()]
        )
        with recorded_run(
            out.parent,
            "label",
            run_file="labels.run.json",
            config={
                "labelers": chosen,
                "clap": clap,
                "top_n": top_n,
                "min_agreement": min_agreement,
                "descriptor_backend": descriptor_backend,
            },
            inputs=features_dirs,
        ):
            tables, per_clip = [], []
            paths = {t.track_id: t.path for t in list_tracks(corpus)} if corpus else {}
            for root, examples in load_examples(features_dirs):
                if max_features is not None:
                    strongest = (
                        examples.groupby("feature_id")["peak_activation"].max().nlargest(max_features).index
                    )
                    examples = examples[examples["feature_id"].isin(strongest)]
                parts = []
                if "descriptors" in chosen:
                    parts.append(
                        descriptor_labels(
                            examples, paths, min_agreement=min_agreement, backend=descriptor_backend
                        )
                    )
                if "clap-vocab" in chosen:
                    parts.append(clap_vocabulary_labels(examples, root, scorer, vocab, top_n))
                if llm is not None:
                    parts.append(llm.label_features(examples, root))
                if "manual" in chosen and manual is not None:
                    table = manual_labels(manual)
                    parts.append(table[table["layer"].isin(set(examples["layer"]))])
                part = (
                    pd.concat([p for p in parts if len(p)], ignore_index=True)
                    if any(len(p) for p in parts)
                    else None
                )
                if part is None:
                    continue
                if scorer is not None:
                    part, clips = score_labels(part, examples, root, scorer)
                    per_clip.append(clips)
                tables.append(part)
            if not tables:
                _fail("no labels were proposed (no kept features, or no agreement)")
            labels_table = pd.concat(tables, ignore_index=True)
            save_table(labels_table, out, LABELS)
            if per_clip:
                from artifact_schemas import write_bytes_atomic

                buffer = pd.concat(per_clip, ignore_index=True).to_parquet(index=False)
                write_bytes_atomic(out.with_name("clap_examples.parquet"), buffer)
    except (ValueError, ArtifactError, FileNotFoundError, RuntimeError) as exc:
        _fail(str(exc))
    counts = labels_table.groupby("labeler").size().to_dict()
    stdout_console().print(
        f"{len(labels_table)} labels for {labels_table[['layer', 'feature_id']].drop_duplicates().shape[0]} "
        f"features ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}) in {out}"
    )


@app.command("steering-eval")
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
    from artifact_schemas import write_bytes_atomic
    from sae_core.clap import ClapScorer
    from sae_core.steering_eval import evaluate_steering

    try:
        scorer = ClapScorer.load(clap, cache_dir=run / ".clap_cache")
        table, summary = evaluate_steering(run, scorer)
    except (ValueError, ArtifactError, FileNotFoundError) as exc:
        _fail(str(exc))
    write_bytes_atomic(run / "steering" / "steering_eval.parquet", table.to_parquet(index=False))
    view = Table(title=f"Steering success in {run} (share of features)")
    for col in summary.columns:
        view.add_column(str(col), justify="right")
    for values in summary.itertuples(index=False):
        view.add_row(*(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values))
    stdout_console().print(view)


@app.command()
def summarize(
    run: Path = typer.Argument(..., help="A run directory (with features/ and optionally labels.parquet)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write; default RUN/summary."),
) -> None:
    """Figures and a table of a run: mean CLAP score by layer, per-feature best CLAP score with
    the coverage-vs-threshold curve, feature-frequency histogram (PNG + SVG), summary.md.

    Example: sae-core summarize runs/R
    """
    from sae_core.summary import summarize_run

    try:
        paths = summarize_run(run, out)
    except (ArtifactError, ValueError) as exc:
        _fail(str(exc))
    stdout_console().print(f"wrote {len(paths)} files to {paths[0].parent}")
    stdout_console().print(paths[-1].read_text())


@app.command()
def metrics(
    sae_dir: Path = typer.Argument(..., help="A run's sae/ directory (holding layer_<l>/ checkpoints)."),
) -> None:
    """Print the training metrics of every SAE checkpoint under a directory, one row per layer.

    Example: sae-core metrics runs/R/sae
    """
    files = sorted(sae_dir.glob("*/metrics.json")) or sorted(sae_dir.glob("metrics.json"))
    if not files:
        _fail(f"{sae_dir}: no */metrics.json found (train SAEs with 'sae-core train' first)")
    table = Table(title=f"SAEs in {sae_dir}")
    for col in ("layer dir", "latents", "k", "steps", "FVU", "held-out FVU", "L0", "dead", "frames/s"):
        table.add_column(col, justify="right")
    for path in files:
        m = json.loads(path.read_text())
        table.add_row(
            path.parent.name,
            str(m["sae"]["num_latents"]),
            str(m["sae"]["k"]),
            str(m["steps"]),
            f"{m['fvu']:.3f}",
            f"{m['holdout_fvu']:.3f}",
            f"{m['l0']:.1f}",
            f"{m['dead_fraction']:.1%}",
            f"{m['tokens_per_second']:,.0f}",
        )
    stdout_console().print(table)


@app.command("plan")
def plan_cmd(
    clips: int = typer.Option(..., "--clips", min=1, help="Number of clips, e.g. 160000."),
    clip_seconds: float = typer.Option(10.0, "--clip-seconds", help="Seconds per clip."),
    model: str = typer.Option(
        "musicgen-small", "--model", help="musicgen-small, musicgen-medium or musicgen-large."
    ),
    layers: str = typer.Option("paper", "--layers", help="'paper' (five layers) or a comma list."),
    expansion: int = typer.Option(32, "--expansion", min=1, help="SAE latents per model dimension."),
    devices: int = typer.Option(1, "--devices", min=1, help="GPUs (or processes) sharing the work."),
    keep_fraction: float = typer.Option(1.0, "--keep-fraction", help="Share of frames kept (extract)."),
    costs: Path | None = typer.Option(
        None, "--costs", help="Measured costs (benchmarks/bench_costs.py); default: the shipped file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Disk, memory and time of an experiment, extract-then-train against online.

    The times come from measured per-frame costs (the costs file says on what machine),
    scaled to the chosen model and SAE shape; the plan prints how.

    Example: sae-core plan --clips 160000 --model musicgen-large --layers paper --expansion 32
    """
    from sae_core.plan import COSTS, PlanConfig
    from sae_core.plan import plan as make_plan

    n_layers = 5 if layers == "paper" else len(_parse_layers(layers))
    try:
        cfg = PlanConfig(
            clips=clips,
            clip_seconds=clip_seconds,
            model=model,
            layers=n_layers,
            expansion=expansion,
            devices=devices,
            keep_fraction=keep_fraction,
            costs=costs or COSTS,
        )
        result = make_plan(cfg)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        stdout_console().print_json(json.dumps(asdict(result)))
        return
    console = stdout_console()
    console.print(
        f"{clips:,} clips x {clip_seconds:g} s = {result.frames:,.0f} frames "
        f"({result.kept_frames:,.0f} kept); {model} (d {result.d_model}), {n_layers} layers, "
        f"SAEs of {result.latents:,} latents, {devices} device(s)"
    )
    table = Table("path", "disk", "memory per device", "time")
    for name, p in result.paths.items():
        table.add_row(name, f"{p['disk_gb']:,.1f} GB", f"{p['memory_gb']:,.1f} GB", f"{p['hours']:,.1f} h")
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}")
    console.print(f"  costs from {result.source}")


def main() -> None:
    # Before any command imports torch: the same bytes on every x86-64 machine (see numerics).
    pin_cpu_numerics()
    app()
