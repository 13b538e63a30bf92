"""``synth-corpus``, ``tiny-model``, ``tiny-clap``: the inputs a run starts from."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from artifact_schemas.console import stdout_console
from sae_core.activations.extract import ExtractConfig
from sae_core.clap import build_tiny_clap
from sae_core.commands._common import option, reporting
from sae_core.presets.tiny import build_tiny
from sae_core.synth import SynthConfig, write_corpus


def synth_corpus(
    out: Path = option(SynthConfig, "out"),
    tracks: int = option(SynthConfig, "tracks"),
    seconds: float = option(SynthConfig, "seconds"),
    seed: int = option(SynthConfig, "seed"),
    sample_rate: int = option(SynthConfig, "sample_rate"),
    audio_format: str = option(SynthConfig, "audio_format"),
) -> None:
    """Render a synthetic music corpus with ground-truth concept tags.

    Each track has a melody, chords, bass and optional drums, with balanced values of
    tempo, key, mode, instrument, register, density, drums and loudness. Writes the audio,
    metadata.csv (one row per track: caption, tags, every concept), concepts.csv (each
    concept's value and time span; drums may enter mid-track) and run.json.

    Example: sae-core synth-corpus --out corpus --tracks 8 --seconds 4 --seed 1
    """
    with reporting():
        rendered = write_corpus(SynthConfig(out, tracks, seconds, seed, sample_rate, audio_format))
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


def tiny_model(
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    backend: str = option(
        ExtractConfig, "backend", help="transformers or audiocraft: the --backend that loads it."
    ),
) -> None:
    """Build a tiny random MusicGen (4 layers, d_model 64) and save it like real weights.

    For tests and the demo, where no real weights can be downloaded. Pass the directory to
    any '--model' option (with the same --backend): it loads through exactly the code path
    real checkpoints take (save_pretrained/from_pretrained, or audiocraft's checkpoint files).

    Example: sae-core tiny-model --out models/tiny-musicgen
    """
    with reporting():
        build_tiny(str(out), seed=seed, backend=backend)
    stdout_console().print(f"saved a tiny random MusicGen ({backend}) to {out}")


def tiny_clap(
    out: Path = typer.Option(..., "--out", help="Directory to save the model into."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    """Build a tiny random CLAP (transformers ClapModel) and save it with save_pretrained.

    For tests and the demo; pass the directory to '--clap', the path real checkpoints
    (e.g. laion/clap-htsat-unfused) take.

    Example: sae-core tiny-clap --out models/tiny-clap
    """
    build_tiny_clap(out, seed=seed)
    stdout_console().print(f"saved a tiny random CLAP to {out}")
