"""A small example run directory, written through the artifact contract; and a small
folder of one's own clips with its conditions CSV and a MUSHRA study config.

``write_example_run(out)`` writes what ``sae-core`` stages would (features,
example clips, two labelers' labels, steering pairs with random controls) with
plain synthetic tones, in a second. It lets a researcher try ``stimuli-builder``
and ``study-app`` without a model, and it is what the tests and the app
benchmark build study packages from. The audio is real (FLAC files), the
"features" are not: use a run from ``sae-core`` for anything but trying the tools.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from artifact_schemas import EXAMPLES, FEATURES, LABELS, STEERING, save_table

LABEL_WORDS = [
    "bright piano",
    "dark strings",
    "fast tempo",
    "slow tempo",
    "loud drums",
    "quiet pad",
    "major key",
    "minor key",
    "high register",
    "low register",
    "sparse texture",
    "dense texture",
    "plucked guitar",
    "bowed cello",
    "muted trumpet",
    "warm synth",
]


CLIP_S = 4.0


def write_example_run(root: Path, *, layers: tuple[int, ...] = (1, 3), n_features: int = 6) -> Path:
    """A run directory with features, example clips, two labelers' labels and steering pairs."""
    sr = 16000
    # sae-core's clip length (features clip_seconds): a spoken attention check needs ~3 s.
    t = np.arange(int(sr * CLIP_S)) / sr

    def tone(path: Path, freq: float, amp: float = 0.3, hiss: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = amp * np.sin(2 * np.pi * freq * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t)) / 1.3
        if hiss:  # a rougher timbre, fixed by the frequency
            audio = audio + hiss * np.random.default_rng(int(freq * 1000)).standard_normal(t.shape[0])
        sf.write(path, audio, sr)

    label_rows, word = [], 0
    for layer in layers:
        d = root / "features" / f"layer_{layer}"
        feats, exs = [], []
        for f in range(n_features):
            fid = 10 * f + layer
            feats.append(
                dict(
                    feature_id=fid,
                    layer=layer,
                    frequency=0.1,
                    max_activation=5.0 - f * 0.1,
                    n_tracks=3,
                    kept=True,
                    filter_reason=None,
                )
            )
            for rank in range(1, 4):
                rel = f"clips/f{fid:05d}_{rank:02d}.flac"
                tone(d / rel, 200 + 37 * fid + 11 * rank)
                exs.append(
                    dict(
                        feature_id=fid,
                        layer=layer,
                        rank=rank,
                        track_id=f"track_{rank}",
                        start_s=0.0,
                        end_s=CLIP_S,
                        peak_time_s=CLIP_S / 2,
                        peak_activation=4.0,
                        path=rel,
                    )
                )
            for labeler in ("descriptors", "clap-vocab"):
                label_rows.append(
                    dict(
                        feature_id=fid,
                        layer=layer,
                        labeler=labeler,
                        label=LABEL_WORDS[word % len(LABEL_WORDS)],
                        confidence=0.9,
                        clap_score=0.3 + 0.01 * (word % 17),
                    )
                )
                word += 1
        save_table(pd.DataFrame(feats), d / "features.parquet", FEATURES)
        save_table(pd.DataFrame(exs), d / "examples.parquet", EXAMPLES)
    save_table(pd.DataFrame(label_rows), root / "labels.parquet", LABELS)
    # The measure sae-core steer records (librosa, no torch): the same numbers a real run has.
    from sae_core.clips import log_mel_distance

    def distance(name: str) -> float:
        a, sr_a = sf.read(root / "steering" / name)
        b, _ = sf.read(root / "steering" / "baseline_p0_s0.flac")
        return round(log_mel_distance(a, b, sr_a), 3)

    tone(root / "steering" / "baseline_p0_s0.flac", 440)
    steer_rows = []
    layer = layers[-1]
    for f in range(3):
        fid = 10 * f + layer
        for strength in (1.0, 2.0):
            names = {k: f"{k}_f{fid}_a{strength:g}.flac" for k in ("steered", "random")}
            # Steering roughens the tone: its files compress worst, as a steered clip's did in
            # the demo (what tests of size and padding leaks rely on).
            tone(root / "steering" / names["steered"], 500 + fid * strength, hiss=0.02)
            tone(root / "steering" / names["random"], 510 + fid * strength)
            steer_rows.append(
                dict(
                    feature_id=fid,
                    layer=layer,
                    prompt="Simple melody",
                    seed=0,
                    strength=strength,
                    path=names["steered"],
                    baseline_path="baseline_p0_s0.flac",
                    random_path=names["random"],
                    steered_db=distance(names["steered"]),
                    random_db=distance(names["random"]),
                )
            )
    save_table(pd.DataFrame(steer_rows), root / "steering" / "steering.parquet", STEERING)
    return root


# The own-stimuli example: three items, each a reference, two conditions under test and
# an anchor of the CSV's own; its config adds BS.1534's 3.5 kHz low-pass anchor, a slider
# trial per condition and an ABX trial per item and condition.
EXAMPLE_STIMULI_CONFIG = """\
[study]
id = "own-clips"
title = "How do these versions sound?"
seed = 5

[stimuli]
conditions = "conditions.csv"

[mushra]
anchors = ["lp3500"]

[slider]
enabled = true
question = "How natural does this clip sound?"
labels = ["Not at all", "Extremely"]

[abx]
enabled = true
repeats = 1

[audio]
sample_rate = {sample_rate}
"""


def write_example_stimuli(root: Path, *, sample_rate: int = 16000, seconds: float = 2.0) -> Path:
    """``root/clips/*.flac`` (12 files), ``root/conditions.csv`` and ``root/study.toml``;
    returns the config's path (``stimuli-builder build root/study.toml --out S`` builds it).

    Each item is a harmonic melody with noise hits (energy up to the Nyquist frequency, so a
    low-pass anchor is heard), in four versions: the reference, "noisy" (white noise 20 dB
    below it), "coarse" (6-bit samples) and the anchor "thin" (clipped at a third of its peak).
    """
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rows = ["item,condition,file,role"]
    for i, item in enumerate(("melody", "chords", "bass")):
        base = (330.0, 220.0, 110.0)[i]
        notes = base * 2 ** (np.floor(t * 4) % 5 * 2 / 12)
        music = sum(np.sin(2 * np.pi * np.cumsum(notes * h) / sample_rate) / h for h in range(1, 16))
        hits = rng.standard_normal(t.size) * np.exp(-30 * (t % 0.5))
        reference = 0.3 * (music / np.abs(music).max() + 0.3 * hits / np.abs(hits).max())
        peak = np.abs(reference).max()
        versions = {
            "original": (reference, "reference"),
            "noisy": (reference + 0.1 * peak * rng.standard_normal(t.size) / 3, "condition"),
            "coarse": (np.round(reference * 32) / 32, "condition"),
            "thin": (np.clip(reference, -peak / 3, peak / 3), "anchor"),
        }
        for condition, (audio, role) in versions.items():
            rel = f"clips/{item}_{condition}.flac"
            (root / "clips").mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, audio, sample_rate)
            rows.append(f"{item},{condition},{rel},{role}")
    (root / "conditions.csv").write_text("\n".join(rows) + "\n")
    config = root / "study.toml"
    config.write_text(EXAMPLE_STIMULI_CONFIG.format(sample_rate=sample_rate))
    return config
