"""``sae-core``: the model-side stages of the pipeline (corpus, activations, SAEs, features)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from artifact_schemas import recorded_run
from artifact_schemas.console import stdout_console, typer_app
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


def main() -> None:
    app()
