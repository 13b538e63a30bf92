"""Automatic labels for features: audio descriptors, CLAP zero-shot vocabulary, manual CSV.

Every labeler returns rows ``feature_id, layer, labeler, label, confidence`` (the
``labels`` artifact), and :func:`score_labels` adds each label's CLAP score: the mean
cosine similarity of the label's text embedding with the feature's example clips.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import librosa
import numpy as np
import pandas as pd
import pyloudnorm
import soundfile as sf

from artifact_schemas import EXAMPLES, ArtifactError, load_table
from sae_core.clap import ClapScorer

log = logging.getLogger(__name__)

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl & Kessler (1982) key profiles.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

DEFAULT_VOCABULARY = (
    "piano",
    "organ",
    "guitar",
    "plucked strings",
    "string ensemble",
    "bells",
    "flute",
    "drums",
    "bass",
    "synthesizer",
    "voice",
    "slow tempo",
    "fast tempo",
    "major key",
    "minor key",
    "bright",
    "dark",
    "percussive",
    "sustained",
    "sparse",
    "dense",
    "quiet",
    "loud",
    "high pitched",
    "low pitched",
    "happy",
    "sad",
    "calm",
    "energetic",
    "ambient",
    "rock",
    "jazz",
    "pop",
    "electronic",
    "classical",
)


# --------------------------------------------------------------------------- descriptors


@dataclass
class DescriptorThresholds:
    """Where continuous descriptors are cut into words (documented in docs/labels.md)."""

    slow_below_bpm: float = 86.0
    fast_from_bpm: float = 124.0
    dark_below_hz: float = 1200.0
    bright_from_hz: float = 2500.0
    tonal_below: float = 0.08
    percussive_from: float = 0.25
    low_below_hz: float = 200.0
    high_from_hz: float = 700.0
    sparse_below_per_s: float = 2.5
    dense_from_per_s: float = 4.5
    quiet_below_lufs: float = -27.0
    loud_from_lufs: float = -22.0


def _cut(value: float, low: float, high: float, words: tuple[str, str, str]) -> str:
    return words[0] if value < low else words[2] if value >= high else words[1]


DESCRIPTOR_BACKENDS = ("librosa", "essentia")


def _essentia_key(y: np.ndarray, sr: int) -> tuple[str, str]:
    """Key and mode from essentia's KeyExtractor (HPCP + key profiles)."""
    import essentia.standard as es  # essentia: a compiled package, loaded only by its labeler

    key, scale, _strength = es.KeyExtractor(sampleRate=float(sr))(y.astype(np.float32))
    return str(key), str(scale)


def describe_segment(
    y: np.ndarray, sr: int, th: DescriptorThresholds | None = None, backend: str = "essentia"
) -> dict[str, str]:
    """Words for one stretch of audio.

    Tempo, key, mode, brightness, percussiveness, register, density and loudness. Key and
    mode come from essentia's KeyExtractor (default) or, with ``backend="librosa"``, from
    Krumhansl-Kessler matching of librosa chroma. Chosen on real music: on 60 Bach chorales
    rendered with a GM soundfont (benchmarks/bench_descriptors_real.py) essentia names the
    key of 0.82 and the mode of 0.97, librosa's profiles 0.73 and 0.93 (docs/labels.md).
    Tempo stays librosa's: essentia's RhythmExtractor2013 doubled the slow tempi of the
    synthetic corpus (4 of 6 tempo features right, vs 6 of 6).
    """

    th = th or DescriptorThresholds()
    y = y.astype(np.float32)
    out: dict[str, str] = {}
    onset_env = librosa.onset.onset_strength(y=y, sr=sr)
    bpm = float(librosa.feature.tempo(onset_envelope=onset_env, sr=sr)[0])
    if backend == "essentia":
        key_name, mode = _essentia_key(y, sr)
        key_name = {"Ab": "G#", "Bb": "A#", "Db": "C#", "Eb": "D#", "Gb": "F#"}.get(key_name, key_name)
    elif backend == "librosa":
        chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1)
        scores = [
            (float(np.corrcoef(np.roll(profile, k), chroma)[0, 1]), k, m)
            for profile, m in ((_MAJOR, "major"), (_MINOR, "minor"))
            for k in range(12)
        ]
        _, tonic, mode = max(scores)
        key_name = PITCH_CLASSES[tonic]
    else:
        raise ValueError(f"descriptor backend must be one of {DESCRIPTOR_BACKENDS}, got {backend!r}")
    out["tempo"] = _cut(
        bpm, th.slow_below_bpm, th.fast_from_bpm, ("slow tempo", "medium tempo", "fast tempo")
    )
    out["mode"] = f"{mode} key"
    out["key"] = f"{key_name} {mode}"
    centroid = float(np.median(librosa.feature.spectral_centroid(y=y, sr=sr)))
    out["brightness"] = _cut(centroid, th.dark_below_hz, th.bright_from_hz, ("dark", "", "bright"))
    # Median-filter HPSS (Fitzgerald 2010) on a coarse magnitude spectrogram: the full-size
    # default is 20x slower and the ratio barely changes.
    spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=512))
    _, percussive = librosa.decompose.hpss(spec, kernel_size=17)
    ratio = float(np.sum(percussive**2) / max(np.sum(spec**2), 1e-12))
    out["percussiveness"] = _cut(ratio, th.tonal_below, th.percussive_from, ("tonal", "", "percussive"))
    f0 = librosa.yin(y, fmin=40, fmax=2000, sr=sr)
    out["register"] = _cut(
        float(np.median(f0)), th.low_below_hz, th.high_from_hz, ("low pitched", "", "high pitched")
    )
    onsets = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sr)
    rate = len(onsets) / max(len(y) / sr, 1e-6)
    out["density"] = _cut(rate, th.sparse_below_per_s, th.dense_from_per_s, ("sparse", "", "dense"))
    loudness = (
        pyloudnorm.Meter(sr).integrated_loudness(y.astype(np.float64)) if len(y) > 0.4 * sr else -np.inf
    )
    out["loudness"] = _cut(float(loudness), th.quiet_below_lufs, th.loud_from_lufs, ("quiet", "", "loud"))
    return {k: v for k, v in out.items() if v}


def descriptor_labels(
    examples: pd.DataFrame,
    track_paths: dict[str, str],
    min_agreement: float = 0.6,
    context_seconds: float = 8.0,
    backend: str = "essentia",
    describe: Callable[..., dict[str, str]] = describe_segment,
) -> pd.DataFrame:
    """Describe each example's stretch of the *source* audio (before loudness normalisation),
    and propose a word where at least ``min_agreement`` of a feature's examples agree.

    Key, mode and tempo need a few bars of harmony and beats: each example is analysed
    over at least ``context_seconds`` centred on it (within the track). On the synthetic
    corpus, 4 s windows got the mode right for 60% of minor-key clips, 8 s for 71%.

    A word that every feature of a layer gets (of at least :data:`UNIVERSAL_MIN_FEATURES`)
    tells none of them apart and is no label: on the demo's polyphonic corpus the bass
    made every window "low pitched" (median YIN f0), so every feature's most agreed word,
    the one a study's rating trials ask about, was the same.
    """
    rows = []
    # Features often share peaks (and so analysis windows); each window is analysed once.
    seen: dict[tuple[str, float, float], dict[str, str]] = {}
    for (layer, feature), group in examples.groupby(["layer", "feature_id"]):
        assert isinstance(layer, int | np.integer) and isinstance(feature, int | np.integer)
        words: dict[str, list[str]] = {}
        for ex in group.to_dict("records"):
            track, ex_start, ex_end = str(ex["track_id"]), float(ex["start_s"]), float(ex["end_s"])
            if track not in track_paths:
                raise ArtifactError("examples.parquet", "track_id", "a track of the corpus", track)
            info = sf.info(track_paths[track])
            duration = info.frames / info.samplerate
            span = min(max(ex_end - ex_start, context_seconds), duration)
            start = min(max(0.0, (ex_start + ex_end - span) / 2), duration - span)
            key = (track, round(start, 2), round(span, 2))
            if key not in seen:
                y, sr = sf.read(
                    track_paths[track],
                    start=round(start * info.samplerate),
                    stop=round((start + span) * info.samplerate),
                    dtype="float32",
                    always_2d=True,
                )
                seen[key] = describe(y.mean(axis=1), sr, backend=backend)
            for descriptor, word in seen[key].items():
                words.setdefault(descriptor, []).append(word)
        for descriptor, values in words.items():
            word, n = Counter(values).most_common(1)[0]
            agreement = n / len(group)
            if agreement >= min_agreement:
                rows.append(
                    {
                        "feature_id": int(feature),
                        "layer": int(layer),
                        "labeler": "descriptors",
                        "label": word,
                        "confidence": agreement,
                        "clap_score": None,
                        "descriptor": descriptor,
                    }
                )
    labels = pd.DataFrame(
        rows, columns=["feature_id", "layer", "labeler", "label", "confidence", "clap_score", "descriptor"]
    )
    return _without_universal_words(labels, examples)


# A layer needs this many features before a word all of them share is taken to say nothing
# about each: with two or three, sharing a true word is likely.
UNIVERSAL_MIN_FEATURES = 4


def _without_universal_words(labels: pd.DataFrame, examples: pd.DataFrame) -> pd.DataFrame:
    """``labels`` less the words every feature of their layer carries (see descriptor_labels)."""
    features = examples.groupby("layer")["feature_id"].nunique().to_dict()
    carriers = labels.groupby(["layer", "label"])["feature_id"].nunique().to_dict()
    universal: set[tuple[int, str]] = set()
    for key, n in carriers.items():
        layer, label = cast(tuple[int, str], key)
        if features[layer] >= UNIVERSAL_MIN_FEATURES and n == features[layer]:
            universal.add((layer, label))
            log.info("layer %s: every one of its %d features is '%s'; not a label", layer, n, label)
    keep = [(a, b) not in universal for a, b in zip(labels["layer"], labels["label"], strict=True)]
    return labels[keep].reset_index(drop=True)


# --------------------------------------------------------------------------- CLAP


def clap_vocabulary_labels(
    examples: pd.DataFrame, root: Path, scorer: object, vocabulary: Sequence[str], top_n: int = 3
) -> pd.DataFrame:
    """The ``top_n`` vocabulary terms closest (CLAP) to each feature's example clips.

    Confidence is CLAP's softmax over the vocabulary (its learned temperature) of the mean
    similarity, so it says how much a term stands out from the alternatives.
    """

    assert isinstance(scorer, ClapScorer)
    vocab = list(dict.fromkeys(vocabulary))
    text = scorer.embed_text(vocab)
    scale = (
        float(scorer.model.logit_scale_a.detach().exp()) if hasattr(scorer.model, "logit_scale_a") else 100.0
    )
    rows = []
    for (layer, feature), group in examples.groupby(["layer", "feature_id"]):
        assert isinstance(layer, int | np.integer) and isinstance(feature, int | np.integer)
        audio = scorer.embed_audio([root / p for p in group["path"]])
        sims = (text @ audio.T).mean(axis=1)
        probs = np.exp(scale * (sims - sims.max()))
        probs /= probs.sum()
        for i in np.argsort(-sims)[:top_n]:
            rows.append(
                {
                    "feature_id": int(feature),
                    "layer": int(layer),
                    "labeler": "clap-vocab",
                    "label": vocab[i],
                    "confidence": float(probs[i]),
                    "clap_score": float(sims[i]),
                }
            )
    return pd.DataFrame(rows, columns=["feature_id", "layer", "labeler", "label", "confidence", "clap_score"])


def score_labels(
    labels: pd.DataFrame, examples: pd.DataFrame, root: Path, scorer: object
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set each label's ``clap_score`` (mean over the feature's clips) and return per-clip scores too."""

    assert isinstance(scorer, ClapScorer)
    labels = labels.copy()
    per_clip: list[dict[str, object]] = []
    grouped = {key: group for key, group in examples.groupby(["layer", "feature_id"])}
    means: list[float | None] = []
    for row in labels.to_dict("records"):
        group = grouped.get((row["layer"], row["feature_id"]))
        if group is None:
            means.append(None)
            continue
        sims = scorer.similarity([str(row["label"])], [root / p for p in group["path"]])[0]
        means.append(float(sims.mean()))
        for rank, sim in zip(group["rank"], sims, strict=True):
            per_clip.append(
                {
                    "feature_id": row["feature_id"],
                    "layer": row["layer"],
                    "labeler": row["labeler"],
                    "label": row["label"],
                    "rank": int(rank),
                    "clap_score": float(sim),
                }
            )
    labels["clap_score"] = pd.array(means, dtype="Float64")
    return labels, pd.DataFrame(per_clip)


# --------------------------------------------------------------------------- manual


def manual_labels(path: str | Path) -> pd.DataFrame:
    """Labels written by people: a CSV with feature_id, layer, label [, confidence]."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise ArtifactError(path, None, f"a readable CSV ({exc})", has_value=False) from exc
    for column in ("feature_id", "layer", "label"):
        if column not in table.columns:
            raise ArtifactError(
                path, column, "a column of the manual labels CSV (feature_id, layer, label)", has_value=False
            )
    if "confidence" not in table.columns:
        table["confidence"] = None
    table["labeler"] = "manual"
    table["clap_score"] = None
    return table[["feature_id", "layer", "labeler", "label", "confidence", "clap_score"]]


def load_examples(feature_dirs: Sequence[str | Path]) -> list[tuple[Path, pd.DataFrame]]:

    return [(Path(d), load_table(Path(d) / "examples.parquet", EXAMPLES)) for d in feature_dirs]
