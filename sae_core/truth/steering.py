"""Steering against the truth: does adding a matched feature's direction put its concept into
the music? (issue 18.4.)

For every SAE feature that ``sae-core concepts`` matched to a concept value (held-out AUROC
>= 0.9), the model generates from prompts that lack the value (captions of corpus tracks
with another value of the concept: "minor" is steered on major prompts, "drums" on
"without drums" ones), over a sweep of strengths (relative: x the feature's largest
activation) and seeds. Each (prompt, seed) gives three clips: the baseline, the steered
clip and a random direction of the same norm (the control), all from the same seed, so
they differ only by the intervention.

Each clip is then *read*: a classifier fitted on the corpus's own audio (windows of the
clips' length, labelled by the concept spans; MFCC statistics, tonic-aligned chroma,
tempo, pitch and onset rate, then logistic regression, scikit-learn) gives the
probability that the clip has the value. Per strength:

* the share of (prompt, seed) cases read as having the value, for steered, baseline and
  control clips;
* the automatic three-way choice the listening test asks for ("which one has it?"): the
  clip with the highest probability, steered / baseline / control (chance 1/3);
* a quality guard: the steered clips' mean spectral flatness over the baselines' (1 =
  as tonal as the baseline; noise drives it up).

The reader is only as good as its fit: its held-out accuracy on corpus windows is part of
the table (``reader_accuracy``), so a steering rate is never read without it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from artifact_schemas import (
    CONCEPTS,
    FEATURES,
    STEERING_TRUTH,
    FieldError,
    load_table,
    recorded_run,
    save_table,
    write_bytes_atomic,
)
from artifact_schemas.figures import save_figure, subplots
from artifact_schemas.settings import check_settings, same_as, setting
from sae_core.activations.extract import ExtractConfig, list_tracks
from sae_core.audio import load_mono
from sae_core.models import load_model
from sae_core.sae.sparse_coder import SparseCoder
from sae_core.steering.generate import SteerConfig, generate_pairs
from sae_core.truth.concepts import ConceptsConfig, concept_spans, selection_half
from sae_core.truth.match import matched_features

log = logging.getLogger(__name__)

READ_RATE = 16000  # readers resample everything to this rate


@dataclass
class SteeringTruthConfig:
    """What ``run_steering_truth`` needs; validated on construction, naming the field at fault."""

    run: Path
    """A run with concepts/concepts.parquet (sae-core concepts), sae/ and features/."""
    corpus: Path
    """The corpus with the ground truth (concepts.csv or tags)."""
    model: str
    """The MusicGen the SAEs were trained on."""
    out: Path | None = None
    """Default ``RUN/steering_truth``."""
    strengths: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    """Relative strengths: x the feature's largest activation (features.parquet)."""
    seeds: list[int] = field(default_factory=lambda: list(range(8)))
    """Sampling seeds (the same for all three clips)."""
    prompts_per_feature: int = setting(2, ge=1)
    """Prompts lacking the concept, per feature."""
    seconds: float = setting(4.0, ge=0.5)
    """Seconds per clip."""
    guidance_scale: float = same_as(SteerConfig, "guidance_scale")
    min_auroc: float = same_as(ConceptsConfig, "min_match_auroc")
    min_purity: float = same_as(ConceptsConfig, "min_match_purity")
    """A feature is matched from this AUROC or this purity on (``matched_features``)."""
    max_features: int | None = setting(None, ge=1)
    """Steer only the N matched features with the highest AUROC."""
    layers: list[int] | None = None
    """Steer only these layers' matched features (default: every layer's)."""
    backend: str = same_as(ExtractConfig, "backend")
    device: str = "cpu"
    """Where the model runs: cpu, cuda ..."""

    def __post_init__(self) -> None:
        check_settings(self)
        self.run, self.corpus = Path(self.run), Path(self.corpus)
        self.out = Path(self.out) if self.out is not None else self.run / "steering_truth"
        if not (self.run / "concepts" / "concepts.parquet").is_file():
            raise FieldError("run", f"{self.run}: no concepts/concepts.parquet (run sae-core concepts first)")
        if not (self.corpus / "metadata.csv").is_file():
            raise FieldError("corpus", f"{self.corpus}: no metadata.csv")
        if not self.strengths or min(self.strengths) <= 0:
            raise FieldError("strengths", f"positive relative strengths, got {self.strengths}")
        if not self.seeds:
            raise FieldError("seeds", "needs at least one seed")


# -- reading a concept from audio ---------------------------------------------------------


def audio_features(y: np.ndarray, sr: int = READ_RATE) -> np.ndarray:
    """What the readers see of a clip: timbre (MFCC mean/std), harmony relative to its
    strongest pitch class (chroma rolled to start there: minor and major thirds apart in
    any key), log tempo, log median pitch, onset rate and spectral flatness."""

    y = y.astype(np.float32)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr).mean(axis=1)
    chroma = np.roll(chroma, -int(np.argmax(chroma))) / max(float(chroma.sum()), 1e-9)
    onset = librosa.onset.onset_strength(y=y, sr=sr)
    bpm = float(librosa.feature.tempo(onset_envelope=onset, sr=sr)[0])
    f0 = np.nan_to_num(librosa.yin(y, fmin=40, fmax=2000, sr=sr), nan=40.0)
    onsets = len(librosa.onset.onset_detect(onset_envelope=onset, sr=sr)) / max(len(y) / sr, 1e-6)
    flatness = float(librosa.feature.spectral_flatness(y=y).mean())
    scalars = [np.log(max(bpm, 1.0)), np.log(float(np.median(f0))), onsets, flatness]  # flatness last
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1), chroma, scalars])


@dataclass
class ConceptReader:
    """Per concept, a classifier from :func:`audio_features` to the concept's value."""

    classifiers: dict[str, Any]
    accuracy: dict[str, float]
    """Held-out accuracy on corpus windows of tracks the fit did not see."""

    @classmethod
    def fit(cls, corpus: Path, seconds: float) -> ConceptReader:
        """Fit on windows of ``seconds`` of the corpus tracks, labelled at their midpoints;
        accuracy is measured on the other half of the tracks (``concepts.selection_half``)."""

        spans = concept_spans(corpus)
        windows: list[tuple[str, float]] = []
        rows: list[np.ndarray] = []
        size = int(seconds * READ_RATE)
        for track in list_tracks(corpus):
            audio = load_mono(track.path, READ_RATE)
            for start in range(0, max(1, len(audio) - size + 1), size):
                rows.append(audio_features(audio[start : start + size]))
                windows.append((track.track_id, (start + size / 2) / READ_RATE))
        x = np.stack(rows)
        track_ids = np.array([t for t, _ in windows])
        fit_half = selection_half(track_ids)
        classifiers, accuracy = {}, {}
        for concept, group in spans.groupby("concept"):
            labels = _labels_at(group, windows)
            known = labels != ""
            train, test = known & fit_half, known & ~fit_half
            if len(set(labels[train])) < 2:
                log.warning("reader: %s has fewer than two values in the fitting half; not read", concept)
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
            model.fit(x[train], labels[train])
            classifiers[str(concept)] = model
            accuracy[str(concept)] = float(model.score(x[test], labels[test])) if test.any() else float("nan")
        return cls(classifiers, accuracy)

    def probability(self, concept: str, value: str, features: np.ndarray) -> np.ndarray:
        """P(value | clip) for each row of :func:`audio_features` (0 for a value the reader
        never saw)."""
        model = self.classifiers[concept]
        classes = list(model.classes_)
        if value not in classes:
            return np.zeros(len(features))
        return np.asarray(model.predict_proba(features)[:, classes.index(value)])


def _labels_at(spans: pd.DataFrame, windows: list[tuple[str, float]]) -> np.ndarray:
    """The concept's value at each (track, time), '' where no span covers it."""
    by_track = {str(t): g for t, g in spans.groupby("track_id")}
    out = []
    for track, time in windows:
        group = by_track.get(track)
        hit = None if group is None else group[(group["start_s"] <= time) & (time < group["end_s"])]
        out.append("" if hit is None or hit.empty else str(hit["value"].iloc[0]))
    return np.array(out)


# -- prompts and generation --------------------------------------------------------------


def prompts_lacking(corpus: Path, concept: str, value: str, n: int) -> list[str]:
    """Captions of corpus tracks that never have ``concept=value`` (the first ``n``, in
    corpus order; an empty prompt where the corpus has no such caption)."""
    spans = concept_spans(corpus)
    mine = spans[spans["concept"] == concept]
    having = set(mine.loc[mine["value"] == value, "track_id"].astype(str))
    meta = pd.read_csv(corpus / "metadata.csv", dtype=str, keep_default_na=False)
    lacking = set(mine["track_id"].astype(str)) - having
    captions = [
        str(c).strip()
        for t, c in zip(meta["track_id"], meta.get("caption", [""] * len(meta)), strict=True)
        if str(t) in lacking and str(c).strip()
    ]
    return list(dict.fromkeys(captions))[:n] or [""]


def _matched(cfg: SteeringTruthConfig) -> pd.DataFrame:
    table = load_table(cfg.run / "concepts" / "concepts.parquet", CONCEPTS)
    if cfg.layers is not None:
        table = table[table["layer"].isin(cfg.layers)]
    matched = matched_features(table, cfg.min_auroc, cfg.min_purity)
    matched = matched.sort_values("auroc", ascending=False, kind="stable")
    if cfg.max_features is not None:
        matched = matched.head(cfg.max_features)
    return matched


def steer_matched(cfg: SteeringTruthConfig, model: Any, progress: bool = True) -> pd.DataFrame:
    """Generate baseline, steered and control clips for every matched feature; one row per
    (feature, prompt, seed, strength), paths relative to ``cfg.out``."""

    assert cfg.out is not None
    frames = []
    for r in _matched(cfg).to_dict("records"):
        layer, feature = int(r["layer"]), int(r["unit"])
        sae = SparseCoder.load_from_disk(cfg.run / "sae" / f"layer_{layer}")
        peaks = load_table(cfg.run / "features" / f"layer_{layer}" / "features.parquet", FEATURES)
        beta = float(peaks.set_index("feature_id")["max_activation"].astype(float).loc[feature])
        sub = f"layer_{layer}/{r['concept']}={r['value']}"
        steer = SteerConfig(
            model=cfg.model,
            sae=cfg.run / "sae" / f"layer_{layer}",
            features=[feature],
            prompts=prompts_lacking(cfg.corpus, str(r["concept"]), str(r["value"]), cfg.prompts_per_feature),
            out=cfg.out / sub,
            seeds=cfg.seeds,
            strengths=cfg.strengths,
            relative=True,
            seconds=cfg.seconds,
            guidance_scale=cfg.guidance_scale,
            betas={feature: beta},
        )
        # Levels kept: loudness is one of the concepts whose steering this reads.
        pairs = generate_pairs(model, sae, layer, steer, progress=progress, level=False)
        for column in ("path", "baseline_path", "random_path"):
            pairs[column] = sub + "/" + pairs[column].astype(str)
        frames.append(pairs.assign(concept=str(r["concept"]), value=str(r["value"]), auroc=float(r["auroc"])))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_generations(pairs: pd.DataFrame, out: Path, reader: ConceptReader) -> pd.DataFrame:
    """Each (feature, prompt, seed, strength) with P(value) of its three clips, which of the
    three the reader picks, and the spectral flatness of steered and baseline clips."""

    seen: dict[str, np.ndarray] = {}  # one baseline serves every strength: read it once

    def features_of(path: str) -> np.ndarray:
        if path not in seen:
            seen[path] = audio_features(load_mono(out / path, READ_RATE))
        return seen[path]

    rows = []
    for r in pairs.to_dict("records"):
        concept, value = str(r["concept"]), str(r["value"])
        if concept not in reader.classifiers:
            continue
        x = np.stack([features_of(str(r[c])) for c in ("path", "baseline_path", "random_path")])
        p = reader.probability(concept, value, x)
        flat = x[:2, -1]  # audio_features ends with the mean spectral flatness
        rows.append(
            {k: r[k] for k in ("layer", "feature_id", "concept", "value", "prompt", "seed", "strength")}
            | {"p_steered": p[0], "p_baseline": p[1], "p_control": p[2]}
            | {"chosen": ("steered", "baseline", "control")[int(np.argmax(p))]}
            | {"flatness_steered": float(flat[0]), "flatness_baseline": float(flat[1])}
        )
    return pd.DataFrame(rows)


def summarise(reads: pd.DataFrame, reader: ConceptReader) -> pd.DataFrame:
    """One row per (layer, feature, concept, value, strength): the shares issue 18.4 asks for."""
    keys = ["layer", "feature_id", "concept", "value", "strength"]
    out = []
    for key, g in reads.groupby(keys, sort=True):
        row = dict(zip(keys, key, strict=True)) | {"n": len(g)}
        for who in ("steered", "baseline", "control"):
            row[f"read_{who}"] = float((g[f"p_{who}"] > 0.5).mean())
            row[f"chose_{who}"] = float((g["chosen"] == who).mean())
        baseline_flatness = max(float(g["flatness_baseline"].mean()), 1e-12)
        row["flatness_ratio"] = float(g["flatness_steered"].mean()) / baseline_flatness
        row["reader_accuracy"] = reader.accuracy.get(str(row["concept"]), float("nan"))
        out.append(row)
    return pd.DataFrame(out)


def strength_figure(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Strength-response: per matched feature, the share read as having the value."""

    groups = list(summary.groupby(["layer", "feature_id", "concept", "value"], sort=True))
    fig, axes = subplots(1, max(1, len(groups)), figsize=(3.2 * max(1, len(groups)), 2.8))
    axes = np.atleast_1d(axes).ravel()
    for ax, ((layer, feature, concept, value), g) in zip(axes, groups, strict=False):
        for who, style in (("steered", "-o"), ("baseline", "--s"), ("control", ":^")):
            ax.plot(g["strength"], g[f"read_{who}"], style, label=who)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("strength (x max activation)")
        ax.set_title(f"layer {layer} f{feature}: {concept}={value}", fontsize=8)
    axes[0].set_ylabel("share read as the value")
    axes[0].legend(fontsize=7)
    return save_figure(fig, out, "steering_truth")


def run_steering_truth(cfg: SteeringTruthConfig, progress: bool = True) -> pd.DataFrame:
    """The ``steering-truth`` stage: clips, generations.parquet, steering_truth.parquet, the
    strength-response figure and run.json in ``cfg.out``; returns the summary."""

    assert cfg.out is not None
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    seeds = {f"sampling_{i}": s for i, s in enumerate(cfg.seeds)}
    with recorded_run(cfg.out, "steering-truth", config=config, seeds=seeds, inputs=[cfg.run / "concepts"]):
        model = load_model(cfg.model, backend=cfg.backend, device=cfg.device)
        pairs = steer_matched(cfg, model, progress)
        if pairs.empty:
            summary = pd.DataFrame(columns=[c.name for c in STEERING_TRUTH.columns])
        else:
            reader = ConceptReader.fit(cfg.corpus, cfg.seconds)
            reads = read_generations(pairs, cfg.out, reader)
            write_bytes_atomic(cfg.out / "generations.parquet", reads.to_parquet(index=False))
            summary = summarise(reads, reader)
            strength_figure(summary, cfg.out)
        save_table(summary, cfg.out / "steering_truth.parquet", STEERING_TRUTH)
    return summary
