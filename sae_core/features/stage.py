"""Feature statistics, filters, and each kept feature's top-activating moments.

One pass over a layer's activation shards (in order, bounded memory) encodes every frame
with the SAE and accumulates, per latent: how often it fires, its mean and max
activation, a histogram of its activations, and a pool of candidate peaks. The top
examples are then picked from the pool under a diversity constraint (at most one per
track per window), and the filters of Singh et al. are applied, each dropped feature
keeping the reason.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from artifact_schemas import (
    ACTIVATION_INDEX,
    EXAMPLES,
    FEATURES,
    ArtifactError,
    FieldError,
    load_run_record,
    load_table,
    recorded_run,
    save_table,
)
from artifact_schemas.settings import check_settings, same_as, setting, setting_default
from sae_core.activations.extract import ExtractConfig, batch_residuals, list_tracks, window_batches
from sae_core.audio import check_write_format
from sae_core.clips import cut_clip
from sae_core.models import load_model
from sae_core.runtime import init_distributed, rank, world_size
from sae_core.sae.data import ShardedActivations
from sae_core.sae.sparse_coder import EncoderOutput, SparseCoder

log = logging.getLogger(__name__)

# Histogram of activations in log10 units: 50 bins over [1e-3, 1e2] plus under/overflow.
HIST_EDGES = np.concatenate([[-np.inf], np.linspace(-3, 2, 51), [np.inf]])


@dataclass
class FeatureFilters:
    """Which features are worth showing to people (defaults after Singh et al.)."""

    min_frequency: float = setting(0.01, ge=0, le=1)
    """Drop features active on fewer frames than this ("too rare"; paper: r < 0.01)."""
    max_frequency: float = setting(0.25, ge=0, le=1)
    """Drop features active on more frames than this ("too dense"; paper: r > 0.25)."""
    min_tracks: int = setting(2, ge=1)
    """Drop features whose top examples come from fewer distinct tracks ("single track")."""
    min_max_activation: float = setting(0.05, ge=0)
    """Drop features whose largest activation is below this fraction of the median
    largest activation of the live features ("too weak")."""

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class ExampleSelection:
    top: int = setting(10, ge=1)
    """Example clips per kept feature (paper: 10)."""
    clip_seconds: float = setting(4.0, ge=0.1)
    """Length of an example clip; two examples of one feature are never closer than this
    within the same track."""
    candidates: int = setting(200, ge=1)
    """Candidate peaks kept per feature while streaming (>= top; more = more diversity)."""

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class FeatureStats:
    features: pd.DataFrame
    """One row per latent: the ``features`` artifact columns plus mean_activation, histogram."""
    examples: pd.DataFrame
    """Top examples of every live feature: feature_id, rank, track_id, frame, peak_time_s, peak_activation."""


class LatentTally:
    """Running per-latent statistics and candidate peaks over a stream of SAE codes.

    Counts, sums and histograms add; peaks take the maximum; the candidates are each
    latent's ``candidates`` largest (activation, row) pairs, ties broken by the smaller row
    id. All of it is exact under :meth:`merge`, so tallies of disjoint parts of a corpus
    (ranks, shards) merge into the tally of the whole. Row ids are whatever the caller
    makes them (a position in an activation index, or a (track, frame) key), as long as
    they are unique.
    """

    def __init__(self, n_latents: int, candidates: int) -> None:
        self.n_latents, self.candidates = n_latents, candidates
        self.frames = 0
        self.count = np.zeros(n_latents, dtype=np.int64)
        self.total = np.zeros(n_latents)
        self.peak = np.zeros(n_latents)
        self.hist = np.zeros((n_latents, len(HIST_EDGES) - 1), dtype=np.int64)
        self.pool: tuple[np.ndarray, ...] = (np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
        self._pending: list[tuple[np.ndarray, ...]] = []
        self._pending_size = 0

    def add(self, code: EncoderOutput, rows: np.ndarray) -> None:
        """The codes of ``len(rows)`` frames whose row ids are ``rows``."""
        vals = code.latent_acts.float().cpu().numpy().ravel()
        feats = code.latent_indices.cpu().numpy().ravel()
        rows = np.repeat(np.asarray(rows, dtype=np.int64), code.latent_acts.shape[1])
        active = vals > 0
        vals, feats, rows = vals[active], feats[active], rows[active]
        self.frames += len(code.latent_acts)
        self.count += np.bincount(feats, minlength=self.n_latents)
        self.total += np.bincount(feats, weights=vals, minlength=self.n_latents)
        np.maximum.at(self.peak, feats, vals)
        np.add.at(self.hist, (feats, np.digitize(np.log10(vals), HIST_EDGES[1:-1])), 1)
        self._pending.append((feats, vals, rows))
        self._pending_size += len(feats)
        # Sorting the pool costs its size: compact only when the pending entries reach it,
        # so the cost per entry stays constant (a sort per batch would dominate the pass).
        if self._pending_size >= max(self.candidates * self.n_latents, 1 << 20):
            self.compact()

    def compact(self) -> None:
        feats, vals, rows = (np.concatenate(column) for column in zip(self.pool, *self._pending, strict=True))
        self.pool = _keep_top(feats, vals, rows, self.candidates)
        self._pending, self._pending_size = [], 0

    def merge(self, other: LatentTally) -> None:
        """Add ``other``'s frames (disjoint from ours) to this tally."""
        self.frames += other.frames
        self.count += other.count
        self.total += other.total
        np.maximum(self.peak, other.peak, out=self.peak)
        self.hist += other.hist
        other.compact()
        self._pending.append(other.pool)
        self.compact()

    def features(self, layer: int, n_tracks: np.ndarray) -> pd.DataFrame:
        count = self.count
        return pd.DataFrame(
            {
                "feature_id": np.arange(self.n_latents),
                "layer": layer,
                "frequency": count / max(self.frames, 1),
                "mean_activation": np.divide(
                    self.total, count, out=np.zeros(self.n_latents), where=count > 0
                ),
                "max_activation": self.peak,
                "n_tracks": n_tracks,
                "histogram": list(self.hist),
            }
        )


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
    tally = LatentTally(sae.cfg.num_latents, selection.candidates)
    offset = 0  # rows are positions in the index
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"encoding {acts_dir.name}", total=len(source.shards))
        for i in range(len(source.shards)):
            data = source.load_shard(i)
            for start in range(0, len(data), batch_size):
                chunk = data[start : start + batch_size]
                tally.add(sae.encode(chunk), np.arange(len(chunk)) + offset + start)
            offset += len(data)
            bar.advance(task)
    tally.compact()
    rows = tally.pool[2]
    track, frame = index["track_id"].to_numpy()[rows], index["frame"].to_numpy()[rows]
    return _summary(tally, track, frame, int(meta["layer"]), float(meta["frame_rate"]), selection)


@dataclass
class StreamSource:
    """Where :func:`stream_feature_stats` gets its rows: a model run teacher-forced over a
    corpus with the windows and text condition the SAE was trained with."""

    model: Any
    """A loaded ``MusicModel``."""
    tracks: list[Any]
    """The corpus's tracks (``extract.list_tracks``), in corpus order."""
    layer: int
    window_seconds: float = same_as(ExtractConfig, "window_seconds")
    batch_seconds: float = same_as(ExtractConfig, "batch_seconds")
    text_condition: str = same_as(ExtractConfig, "text_condition")


@torch.no_grad()
def stream_feature_stats(
    sae: SparseCoder,
    source: StreamSource,
    selection: ExampleSelection | None = None,
    batch_size: int = 4096,
    progress: bool = True,
) -> FeatureStats | None:
    """Summarise every latent from the model's forward passes, without stored activations.

    Under ``torchrun`` each rank runs every N-th track and tallies it; the tallies are
    gathered on rank 0 and merged (sums, maxima, and the union of per-rank top candidates,
    whose top-k is the top-k of the whole), so rank 0 returns what one process would and
    the other ranks return None.
    """

    selection = selection or ExampleSelection()
    model, layer = source.model, source.layer
    if model.d_model != sae.cfg.d_in:
        raise ValueError(f"SAE d_in {sae.cfg.d_in} != the model's d_model {model.d_model}")
    model._check_layer(layer)
    position = {t.track_id: i for i, t in enumerate(source.tracks)}
    mine = source.tracks[rank() :: world_size()]
    tally = LatentTally(sae.cfg.num_latents, selection.candidates)
    device = sae.W_dec.device
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"encoding layer {layer}", total=len(mine))
        done: set[str] = set()
        batches = window_batches(model, mine, source.window_seconds, source.batch_seconds, [])
        for batch in batches:
            acts, n_frames = batch_residuals(model, batch, [layer], source.text_condition)  # type: ignore[arg-type]
            rows = acts[layer].reshape(-1, model.d_model).float().to(device)
            # A row id is (track position, frame): unique, and ordered as in an extraction.
            keys = np.concatenate(
                [(position[t.track_id] << _FRAME_BITS) + first + np.arange(n_frames) for t, first, _ in batch]
            )
            for start in range(0, len(rows), batch_size):
                tally.add(sae.encode(rows[start : start + batch_size]), keys[start : start + batch_size])
            done |= {t.track_id for t, _, _ in batch}
            bar.update(task, completed=len(done))
    tally.compact()
    if world_size() > 1:
        parts: list[LatentTally | None] = [None] * world_size() if rank() == 0 else []
        torch.distributed.gather_object(tally, parts if rank() == 0 else None, dst=0)
        if rank() != 0:
            return None
        tally = LatentTally(sae.cfg.num_latents, selection.candidates)
        for part in parts:
            assert part is not None
            tally.merge(part)
    keys = tally.pool[2]
    track_ids = np.array([t.track_id for t in source.tracks], dtype=object)
    track, frame = track_ids[keys >> _FRAME_BITS], keys & ((1 << _FRAME_BITS) - 1)
    return _summary(tally, track, frame, layer, float(model.frame_rate), selection)


_FRAME_BITS = 32  # frames of one track: 2**32 at 50 frames/s is 2.7 years


def _summary(
    tally: LatentTally,
    track: np.ndarray,
    frame: np.ndarray,
    layer: int,
    frame_rate: float,
    selection: ExampleSelection,
) -> FeatureStats:
    """The tally's feature table and diverse top examples (``track``, ``frame``: of each candidate)."""
    feats, vals, rows = tally.pool
    examples = _diverse_top(feats, vals, rows, track, frame, frame_rate, selection)
    n_latents = tally.n_latents
    n_tracks = examples.groupby("feature_id")["track_id"].nunique().reindex(range(n_latents), fill_value=0)
    return FeatureStats(tally.features(layer, n_tracks.to_numpy()), examples)


def _keep_top(
    feats: np.ndarray, vals: np.ndarray, rows: np.ndarray, per_feature: int
) -> tuple[np.ndarray, ...]:
    """The ``per_feature`` largest (value, row) pairs of each feature, ties to the smaller row."""
    order = np.lexsort((rows, -vals, feats))
    feats, vals, rows = feats[order], vals[order], rows[order]
    starts = np.flatnonzero(np.r_[True, feats[1:] != feats[:-1]])
    rank = np.arange(len(feats)) - np.repeat(starts, np.diff(np.r_[starts, len(feats)]))
    keep = rank < per_feature
    return feats[keep], vals[keep], rows[keep]


def _diverse_top(
    feats: np.ndarray,
    vals: np.ndarray,
    rows: np.ndarray,
    track: np.ndarray,
    frame: np.ndarray,
    frame_rate: float,
    selection: ExampleSelection,
) -> pd.DataFrame:
    """Greedy top-M per feature, skipping peaks within one window of a chosen peak in the same
    track (``track``, ``frame``: of each candidate)."""
    half_frame = 0.5 / frame_rate
    out: list[tuple[int, int, str, int, float, float]] = []
    order = np.lexsort((rows, -vals, feats))
    for feature, group in pd.Series(order).groupby(feats[order]):
        assert isinstance(feature, int | np.integer)
        chosen: list[tuple[str, float]] = []
        for i in group.to_numpy():
            t_id, f = str(track[i]), int(frame[i])
            time_s = f / frame_rate + half_frame
            if any(t_id == c_t and abs(time_s - c_time) < selection.clip_seconds for c_t, c_time in chosen):
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
    stats: FeatureStats,
    corpus: str | Path,
    out: str | Path,
    filters: FeatureFilters | None = None,
    selection: ExampleSelection | None = None,
    target_lufs: float = -23.0,
    audio_format: str = "flac",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Filters and example clips (written to ``out/clips``) of ``stats``; returns the two tables."""

    check_write_format(audio_format)
    filters = filters or FeatureFilters()
    selection = selection or ExampleSelection()
    out = Path(out)
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
                selection.clip_seconds,
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
    """What ``run_features`` needs; validated on construction, naming the field at fault.

    The rows come from the layer's stored activations (``acts``) or, with ``model``, from
    the model run teacher-forced over ``corpus`` (after online training, when nothing was
    stored); ``window_seconds``, ``batch_seconds`` and ``text_condition`` then say how.
    Left as None they are those the SAE was trained with, read from the online run's
    run.json beside the SAE (``sae-core train --model`` writes it), else extraction's
    defaults (10 s, 40 s, empty): other windows would give the SAE rows it never saw.
    """

    sae: Path
    acts: Path | None
    corpus: Path
    out: Path
    filters: FeatureFilters = field(default_factory=FeatureFilters)
    selection: ExampleSelection = field(default_factory=ExampleSelection)
    lufs: float = -23.0
    """Loudness of the example clips (LUFS)."""
    audio_format: str = "flac"
    """Format of the example clips: flac or wav."""
    model: str | None = None
    backend: str = same_as(ExtractConfig, "backend")
    window_seconds: float | None = setting(None, gt=0)
    batch_seconds: float | None = setting(None, gt=0)
    text_condition: str | None = setting(None, choices=("empty", "caption"))
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_settings(self)
        if (self.acts is None) == (self.model is None):
            raise FieldError(
                "acts",
                "give the layer's activations or a model to run over the corpus (model), one of the two",
            )
        for name in ("sae", "acts", "corpus"):
            if getattr(self, name) is None:
                continue
            path = Path(getattr(self, name))
            if not path.is_dir():
                raise FieldError(name, f"{path}: no such directory")
            setattr(self, name, path)
        self.out = Path(self.out)
        check_write_format(self.audio_format)
        trained = _online_settings(self.sae) if self.model is not None else {}
        for name in ("window_seconds", "batch_seconds", "text_condition"):
            if getattr(self, name) is None:
                setattr(self, name, trained.get(name, setting_default(ExtractConfig, name)))
        assert self.window_seconds is not None and self.batch_seconds is not None
        if not 0 < self.window_seconds <= self.batch_seconds:
            raise FieldError(
                "window_seconds",
                f"must be > 0 and <= batch_seconds ({self.batch_seconds}), got {self.window_seconds}",
            )

    def stats(self, progress: bool) -> FeatureStats | None:
        """The statistics pass (None on the ranks other than 0 under torchrun)."""

        if self.acts is not None:
            return compute_feature_stats(
                SparseCoder.load_from_disk(self.sae), self.acts, self.selection, progress=progress
            )
        assert self.model is not None
        device = init_distributed(self.device)
        sae = SparseCoder.load_from_disk(self.sae, device=device)
        if sae.cfg.layer is None:
            raise FieldError(
                "sae", f"{self.sae}/cfg.json names no layer: which layer's rows to run it on is unknown"
            )
        model = load_model(self.model, backend=self.backend, device=device)
        assert self.window_seconds is not None and self.batch_seconds is not None and self.text_condition
        source = StreamSource(
            model,
            list_tracks(self.corpus),
            sae.cfg.layer,
            self.window_seconds,
            self.batch_seconds,
            self.text_condition,
        )
        return stream_feature_stats(sae, source, self.selection, progress=progress)


def _online_settings(sae_dir: Path) -> dict[str, Any]:
    """Windows and text condition of the online run that trained ``sae_dir`` ({} if none)."""

    record_path = sae_dir.parent / "run.json"
    if not record_path.is_file():
        return {}
    try:
        record = load_run_record(record_path)
    except ValueError:
        return {}
    if record.stage != "train-online":
        return {}
    names = ("window_seconds", "batch_seconds", "text_condition")
    return {k: record.config[k] for k in names if k in record.config}


def run_features(cfg: FeaturesConfig, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The ``features`` stage: features.parquet, examples.parquet, clips/ and run.json in ``cfg.out``.

    Under torchrun (with ``cfg.model``) every rank runs its share of the corpus and rank 0
    writes; the other ranks return None.
    """

    config: dict[str, Any] = {
        "filters": asdict(cfg.filters),
        "selection": asdict(cfg.selection),
        "lufs": cfg.lufs,
        "format": cfg.audio_format,
    }
    if cfg.model is not None:
        config |= {"model": cfg.model, "backend": cfg.backend, "window_seconds": cfg.window_seconds,
                   "batch_seconds": cfg.batch_seconds, "text_condition": cfg.text_condition}  # fmt: skip
    recording: Any = contextlib.nullcontext()
    if rank() == 0:
        recording = recorded_run(cfg.out, "features", config=config, inputs=[cfg.sae, cfg.acts or cfg.corpus])
    with recording:
        stats = cfg.stats(progress)
        if stats is None:
            return None
        table, examples = write_features(
            stats, cfg.corpus, cfg.out, cfg.filters, cfg.selection, cfg.lufs, cfg.audio_format, progress
        )
        save_table(table, cfg.out / "features.parquet", FEATURES)
        save_table(examples, cfg.out / "examples.parquet", EXAMPLES)
    return table, examples
