"""Feature statistics, filters, and each kept feature's top-activating moments.

One pass over a layer's activation shards (in order, bounded memory) encodes every frame
with the SAE and accumulates, per latent: how often it fires, its mean and max
activation, a histogram of its activations, and a pool of candidate peaks. The top
examples are then picked from the pool under a diversity constraint (at most one per
track per window), and the filters of Singh et al. are applied, each dropped feature
keeping the reason.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from artifact_schemas import ACTIVATION_INDEX, ArtifactError, FieldError, load_table
from sae_core.sae.data import ShardedActivations
from sae_core.sae.sparse_coder import SparseCoder

log = logging.getLogger(__name__)

# Histogram of activations in log10 units: 50 bins over [1e-3, 1e2] plus under/overflow.
HIST_EDGES = np.concatenate([[-np.inf], np.linspace(-3, 2, 51), [np.inf]])


@dataclass
class FeatureFilters:
    """Which features are worth showing to people (defaults after Singh et al.)."""

    min_frequency: float = 0.01
    """Drop features active on fewer frames than this ("too rare"; paper: r < 0.01)."""
    max_frequency: float = 0.25
    """Drop features active on more frames than this ("too dense"; paper: r > 0.25)."""
    min_tracks: int = 2
    """Drop features whose top examples come from fewer distinct tracks ("single track")."""
    min_max_activation: float = 0.05
    """Drop features whose largest activation is below this fraction of the median
    largest activation of the live features ("too weak")."""


@dataclass
class ExampleSelection:
    top: int = 10
    """Examples per feature (paper: 10)."""
    window_seconds: float = 4.0
    """Length of an example clip; two examples of one feature are never closer than this
    within the same track."""
    candidates: int = 200
    """Candidate peaks kept per feature while streaming (>= top; more = more diversity)."""


@dataclass
class FeatureStats:
    features: pd.DataFrame
    """One row per latent: the ``features`` artifact columns plus mean_activation, histogram."""
    examples: pd.DataFrame
    """Top examples of every live feature: feature_id, rank, track_id, frame, peak_time_s, peak_activation."""


@torch.no_grad()
def compute_feature_stats(
    sae: SparseCoder,
    acts_dir: str | Path,
    selection: ExampleSelection | None = None,
    batch_size: int = 4096,
    progress: bool = True,
) -> FeatureStats:
    """Stream a layer's activations through ``sae`` and summarise every latent."""
    selection = selection or ExampleSelection()
    acts_dir = Path(acts_dir)
    index = load_table(acts_dir / "index.parquet", ACTIVATION_INDEX)
    source = ShardedActivations(acts_dir, holdout_fraction=0.0, index=index)
    meta = source.meta
    if source.d_in != sae.cfg.d_in:
        raise ValueError(f"SAE d_in {sae.cfg.d_in} != activations' d_model {source.d_in} in {acts_dir}")
    n_latents = sae.cfg.num_latents
    count = np.zeros(n_latents, dtype=np.int64)
    total = np.zeros(n_latents)
    peak = np.zeros(n_latents)
    hist = np.zeros((n_latents, len(HIST_EDGES) - 1), dtype=np.int64)
    pool_feat = np.empty(0, dtype=np.int64)
    pool_val = np.empty(0)
    pool_row = np.empty(0, dtype=np.int64)
    offset = 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"encoding {acts_dir.name}", total=len(source.shards))
        for i in range(len(source.shards)):
            data = source.load_shard(i)
            shard_feats, shard_vals, shard_rows = [pool_feat], [pool_val], [pool_row]
            for start in range(0, len(data), batch_size):
                code = sae.encode(data[start : start + batch_size])
                vals = code.latent_acts.numpy().ravel()
                feats = code.latent_indices.numpy().ravel()
                rows = np.repeat(np.arange(len(code.latent_acts)) + offset + start, code.latent_acts.shape[1])
                active = vals > 0
                vals, feats, rows = vals[active], feats[active], rows[active]
                count += np.bincount(feats, minlength=n_latents)
                total += np.bincount(feats, weights=vals, minlength=n_latents)
                np.maximum.at(peak, feats, vals)
                bins = np.digitize(np.log10(vals), HIST_EDGES[1:-1])
                np.add.at(hist, (feats, bins), 1)
                shard_feats.append(feats)
                shard_vals.append(vals)
                shard_rows.append(rows)
            # Candidates are merged once per shard: a sort per batch would dominate the pass.
            pool_feat, pool_val, pool_row = _keep_top(
                np.concatenate(shard_feats),
                np.concatenate(shard_vals),
                np.concatenate(shard_rows),
                selection.candidates,
            )
            offset += len(data)
            bar.advance(task)
    frames = len(index)
    frame_rate = float(meta["frame_rate"])
    examples = _diverse_top(pool_feat, pool_val, pool_row, index, frame_rate, selection)
    n_tracks = examples.groupby("feature_id")["track_id"].nunique().reindex(range(n_latents), fill_value=0)
    features = pd.DataFrame(
        {
            "feature_id": np.arange(n_latents),
            "layer": int(meta["layer"]),
            "frequency": count / max(frames, 1),
            "mean_activation": np.divide(total, count, out=np.zeros(n_latents), where=count > 0),
            "max_activation": peak,
            "n_tracks": n_tracks.to_numpy(),
            "histogram": list(hist),
        }
    )
    return FeatureStats(features, examples)


def _keep_top(
    feats: np.ndarray, vals: np.ndarray, rows: np.ndarray, per_feature: int
) -> tuple[np.ndarray, ...]:
    """The ``per_feature`` largest (value, row) pairs of each feature."""
    order = np.lexsort((-vals, feats))
    feats, vals, rows = feats[order], vals[order], rows[order]
    starts = np.flatnonzero(np.r_[True, feats[1:] != feats[:-1]])
    rank = np.arange(len(feats)) - np.repeat(starts, np.diff(np.r_[starts, len(feats)]))
    keep = rank < per_feature
    return feats[keep], vals[keep], rows[keep]


def _diverse_top(
    feats: np.ndarray,
    vals: np.ndarray,
    rows: np.ndarray,
    index: pd.DataFrame,
    frame_rate: float,
    selection: ExampleSelection,
) -> pd.DataFrame:
    """Greedy top-M per feature, skipping peaks within one window of a chosen peak in the same track."""
    track = index["track_id"].to_numpy()
    frame = index["frame"].to_numpy()
    half_frame = 0.5 / frame_rate
    out: list[tuple[int, int, str, int, float, float]] = []
    order = np.lexsort((-vals, feats))
    for feature, group in pd.Series(order).groupby(feats[order]):
        assert isinstance(feature, int | np.integer)
        chosen: list[tuple[str, float]] = []
        for i in group.to_numpy():
            t_id, f = str(track[rows[i]]), int(frame[rows[i]])
            time_s = f / frame_rate + half_frame
            if any(t_id == c_t and abs(time_s - c_time) < selection.window_seconds for c_t, c_time in chosen):
                continue
            chosen.append((t_id, time_s))
            out.append((int(feature), len(chosen), t_id, f, time_s, float(vals[i])))
            if len(chosen) == selection.top:
                break
    return pd.DataFrame(
        out, columns=["feature_id", "rank", "track_id", "frame", "peak_time_s", "peak_activation"]
    )


def apply_filters(features: pd.DataFrame, filters: FeatureFilters) -> pd.DataFrame:
    """Add ``kept`` and ``filter_reason`` (the first failed filter, in the order below)."""
    live = features["frequency"] > 0
    median_peak = float(features.loc[live, "max_activation"].median()) if live.any() else 0.0
    reasons = np.select(
        [
            ~live,
            features["frequency"] > filters.max_frequency,
            features["frequency"] < filters.min_frequency,
            features["max_activation"] < filters.min_max_activation * median_peak,
            features["n_tracks"] < filters.min_tracks,
        ],
        ["dead", "too_dense", "too_rare", "too_weak", "single_track"],
        default="",
    )
    out = features.copy()
    out["kept"] = reasons == ""
    out["filter_reason"] = pd.Series([r or None for r in reasons], index=out.index, dtype=object)
    return out


def write_features(
    sae_dir: str | Path,
    acts_dir: str | Path,
    corpus: str | Path,
    out: str | Path,
    filters: FeatureFilters | None = None,
    selection: ExampleSelection | None = None,
    target_lufs: float = -23.0,
    audio_format: str = "flac",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Statistics, filters and example clips (written to ``out/clips``); returns the two tables."""
    from sae_core.audio import check_write_format
    from sae_core.clips import cut_clip
    from sae_core.extract import list_tracks

    check_write_format(audio_format)
    filters = filters or FeatureFilters()
    selection = selection or ExampleSelection()
    out = Path(out)
    sae = SparseCoder.load_from_disk(sae_dir)
    stats = compute_feature_stats(sae, acts_dir, selection, progress=progress)
    features = apply_filters(stats.features, filters)
    kept = set(features.loc[features["kept"], "feature_id"])
    examples = stats.examples[stats.examples["feature_id"].isin(kept)].copy()
    paths = {t.track_id: t.path for t in list_tracks(corpus)}
    missing = sorted(set(examples["track_id"]) - set(paths))
    if missing:
        raise ArtifactError(
            corpus, "track_id", f"the tracks the activations came from (e.g. {missing[0]})", missing[:3]
        )
    layer = int(features["layer"].iloc[0])
    examples["layer"] = layer
    starts, ends, files = [], [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("cutting example clips", total=len(examples))
        for feature, rank, track, peak_s in zip(
            examples["feature_id"],
            examples["rank"],
            examples["track_id"],
            examples["peak_time_s"],
            strict=True,
        ):
            rel = f"clips/f{int(feature):05d}_{int(rank):02d}.{audio_format}"
            start, end = cut_clip(
                paths[str(track)],
                float(peak_s),
                selection.window_seconds,
                out / rel,
                target_lufs,
                audio_format,
            )
            starts.append(start)
            ends.append(end)
            files.append(rel)
            bar.advance(task)
    examples["start_s"], examples["end_s"], examples["path"] = starts, ends, files
    return features, examples.reset_index(drop=True)


@dataclass
class FeaturesConfig:
    """What ``run_features`` needs; validated on construction, naming the field at fault."""

    sae: Path
    acts: Path
    corpus: Path
    out: Path
    filters: FeatureFilters = field(default_factory=FeatureFilters)
    selection: ExampleSelection = field(default_factory=ExampleSelection)
    lufs: float = -23.0
    audio_format: str = "flac"

    def __post_init__(self) -> None:
        from sae_core.audio import check_write_format

        for name in ("sae", "acts", "corpus"):
            path = Path(getattr(self, name))
            if not path.is_dir():
                raise FieldError(name, f"{path}: no such directory")
            setattr(self, name, path)
        self.out = Path(self.out)
        check_write_format(self.audio_format)


def run_features(cfg: FeaturesConfig, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``features`` stage: features.parquet, examples.parquet, clips/ and run.json in ``cfg.out``."""
    from artifact_schemas import EXAMPLES, FEATURES, recorded_run, save_table

    config = {
        "filters": asdict(cfg.filters),
        "selection": asdict(cfg.selection),
        "lufs": cfg.lufs,
        "format": cfg.audio_format,
    }
    with recorded_run(cfg.out, "features", config=config, inputs=[cfg.sae, cfg.acts]):
        table, examples = write_features(
            cfg.sae,
            cfg.acts,
            cfg.corpus,
            cfg.out,
            cfg.filters,
            cfg.selection,
            cfg.lufs,
            cfg.audio_format,
            progress,
        )
        save_table(table, cfg.out / "features.parquet", FEATURES)
        save_table(examples, cfg.out / "examples.parquet", EXAMPLES)
    return table, examples
