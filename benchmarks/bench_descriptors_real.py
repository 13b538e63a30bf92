"""Descriptors against the truth of real compositions, not the synthetic corpus (issue 18.7).

The ``descriptors`` labeler (``sae_core.labels.labelers.describe_segment``) was tuned on the
synthetic corpus, whose tones are clean sine mixtures; a key finder can look right there
and be wrong on real music. Here the material is Bach's chorales from music21's corpus
(real four-part harmony, modulations and all), rendered through FluidSynth with a
General MIDI soundfont, and every descriptor whose truth the score gives is scored:

* **key and mode**: music21's analysis of the score (``Score.analyze('key')``, on the
  notes themselves, so no audio model is involved) against each backend's estimate from
  the audio (``librosa``: Krumhansl-Kessler profiles on CQT chroma; ``essentia``:
  KeyExtractor). Key right = same tonic pitch class and mode.
* **tempo class**: each piece gets a tempo drawn (seeded) from the slow / medium / fast
  bands of ``DescriptorThresholds`` and written into the MIDI file; truth is that band.
* **register**: each piece is transposed (seeded) down an octave, not at all, or up two;
  truth is the median note frequency cut at the descriptor's own thresholds.

Instrument is not scored: the descriptors do not name instruments (the CLAP labelers do).

Needs ``music21`` (pip) and ``fluidsynth`` + a GM soundfont (Debian: ``apt-get install
fluidsynth fluid-soundfont-gm``), both offline.

``--smoke`` scores 2 pieces of 6 s: chorales where music21, FluidSynth and a soundfont are
installed, otherwise tracks of the project's synthetic corpus (``sae_core.synth``), so the
scoring and both key finders still run; it runs the code paths; its numbers mean nothing
(tests/sae_core/test_bench_descriptors_real.py runs it).

Usage: python benchmarks/bench_descriptors_real.py [--n 60] [--quick | --smoke] [--seconds 30]
Last line: ``key_librosa=... key_essentia=... mode_librosa=... mode_essentia=...
tempo=... register=... essentia_vs_librosa_key=<ratio>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sae_core.labels.labelers import PITCH_CLASSES, DescriptorThresholds, describe_segment

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
SR = 22050
SEED = 20261201  # the draw of tempi and transpositions; nothing here is trained


def _render(score: object, out: Path, soundfont: str) -> np.ndarray:
    import soundfile as sf

    midi = out.with_suffix(".mid")
    score.write("midi", fp=str(midi))  # type: ignore[attr-defined]
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SR), "-F", str(out), soundfont, str(midi)],
        check=True,
        capture_output=True,
    )
    y, sr = sf.read(out, dtype="float32", always_2d=True)
    assert sr == SR
    return y.mean(axis=1)


def _tempo_band(rng: np.random.Generator, th: DescriptorThresholds) -> tuple[float, str]:
    band = int(rng.integers(3))
    low, high, word = (
        (60.0, th.slow_below_bpm - 8, "slow tempo"),
        (th.slow_below_bpm + 8, th.fast_from_bpm - 8, "medium tempo"),
        (th.fast_from_bpm + 8, 160.0, "fast tempo"),
    )[band]
    return float(rng.uniform(low, high)), word


Piece = tuple[str, np.ndarray, str, str, str, str]
"""name, audio at ``SR``, true key ("C major"), true mode ("major"), tempo word, register word."""


def _chorales_available() -> bool:
    return (
        importlib.util.find_spec("music21") is not None
        and shutil.which("fluidsynth") is not None
        and any(Path(s).exists() for s in SOUNDFONTS)
    )


def _chorales(n: int, seconds: float, th: DescriptorThresholds, tmp: Path) -> Iterator[Piece]:
    """Bach chorales from music21's corpus, transposed, given a tempo, rendered by FluidSynth."""
    from music21 import corpus, instrument, tempo

    soundfont = next((s for s in SOUNDFONTS if Path(s).exists()), None)
    if soundfont is None or shutil.which("fluidsynth") is None:
        raise SystemExit("needs fluidsynth and a GM soundfont: apt-get install fluidsynth fluid-soundfont-gm")
    print(f"rendered with {Path(soundfont).name}")
    rng = np.random.default_rng(SEED)
    paths = sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".krn")))
    picks = rng.choice(len(paths), size=min(n, len(paths)), replace=False)
    for i, index in enumerate(picks):
        score = corpus.parse(paths[index])
        shift = int(rng.choice([-12, 0, 24]))
        bpm, tempo_word = _tempo_band(rng, th)
        true_key = score.analyze("key")
        score = score.transpose(shift)
        for part in score.parts:
            part.insert(0, instrument.Piano())
        score.parts[0].insert(0, tempo.MetronomeMark(number=bpm))
        freqs = [p.frequency for p in score.pitches]
        median_hz = float(np.median(freqs))
        register = (
            "low pitched"
            if median_hz < th.low_below_hz
            else "high pitched"
            if median_hz >= th.high_from_hz
            else ""
        )
        tonic = (true_key.tonic.pitchClass + shift) % 12
        truth_key = f"{PITCH_CLASSES[tonic]} {true_key.mode}"
        y = _render(score, tmp / f"{i}.wav", soundfont)[: int(seconds * SR)]
        yield Path(paths[index]).stem, y, truth_key, str(true_key.mode), tempo_word, register


def _synthetic(n: int, seconds: float, th: DescriptorThresholds) -> Iterator[Piece]:
    """Tracks of the project's synthetic corpus (``sae_core.synth``), for ``--smoke`` where
    music21 or FluidSynth is missing: the same scoring, on material the repo makes itself."""
    from sae_core.synth import draw_concepts, render_track

    registers = {"low": "low pitched", "mid": "", "high": "high pitched"}
    for i, c in enumerate(draw_concepts(n, seconds, SEED)):
        y = render_track(c, seconds, SR, SEED + i)
        tempo_word = (
            "slow tempo"
            if c.tempo_bpm < th.slow_below_bpm
            else "fast tempo"
            if c.tempo_bpm >= th.fast_from_bpm
            else "medium tempo"
        )
        yield f"synth_{i:04d}", y, f"{c.key} {c.mode}", c.mode, tempo_word, registers[c.register]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="chorales to render (default 60)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="12 chorales")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="2 pieces of 6 s (synthetic ones where music21 or fluidsynth is missing): runs the code "
        "paths in seconds; its numbers mean nothing",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="audio analysed per piece")
    args = parser.parse_args()
    n = 2 if args.smoke else 12 if args.quick else args.n
    seconds = min(args.seconds, 6.0) if args.smoke else args.seconds

    th = DescriptorThresholds()
    names = ("key_librosa", "key_essentia", "mode_librosa", "mode_essentia", "tempo", "register")
    hits: dict[str, list[bool]] = {k: [] for k in names}
    synthetic = args.smoke and not _chorales_available()
    if synthetic:
        print("music21, fluidsynth or a GM soundfont is missing: synthetic pieces (sae_core.synth) stand in")
    with tempfile.TemporaryDirectory() as tmp:
        pieces = _synthetic(n, seconds, th) if synthetic else _chorales(n, seconds, th, Path(tmp))
        for name, y, truth_key, true_mode, tempo_word, register in pieces:
            got = {b: describe_segment(y, SR, th, backend=b) for b in ("librosa", "essentia")}
            for b in ("librosa", "essentia"):
                hits[f"key_{b}"].append(got[b]["key"] == truth_key)
                hits[f"mode_{b}"].append(got[b]["mode"] == f"{true_mode} key")
            hits["tempo"].append(got["librosa"]["tempo"] == tempo_word)
            hits["register"].append(got["librosa"].get("register", "") == register)
            print(
                f"{name:<14} truth {truth_key:<9} {tempo_word:<13} "
                f"{register or 'mid':<12} "
                f"librosa {got['librosa']['key']:<9} essentia {got['essentia']['key']:<9} "
                f"tempo {got['librosa']['tempo']:<13} register {got['librosa'].get('register', 'mid')}",
                flush=True,
            )
    share = {k: float(np.mean(v)) for k, v in hits.items()}
    material = "synthetic pieces" if synthetic else "chorales"
    print(f"\n{len(hits['tempo'])} {material}, {seconds:.0f} s each")
    for k, v in share.items():
        print(f"  {k:<14} {v:.2f}")
    ratio = share["key_essentia"] / max(share["key_librosa"], 1e-9)
    print(" ".join(f"{k}={v:.2f}" for k, v in share.items()) + f" essentia_vs_librosa_key={ratio:.2f}")


if __name__ == "__main__":
    main()
