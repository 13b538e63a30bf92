"""Which layer knows what: SAE features as detectors of ground-truth concepts (issue 18.1).

For every layer of a run and every concept value of the corpus (mode=minor,
instrument=flute, drums=yes, ...; or any tag column of a real corpus's metadata.csv),
each frame is a positive or a negative: positive when the frame's time lies in a span
where the track has that value. Every SAE feature's activation is scored as a detector
of it by its AUROC, and so are two baselines on the same frames: single residual-stream
dimensions ("neurons") and PCA directions of the activations.

Selection is honest: the tracks are split in two by a stable hash of their ids. The best
unit of each method (feature, neuron or direction) and its threshold (best F1) are chosen
on one half; its AUROC, precision and recall are reported on the other half, whose tracks
took no part in the choice. Neurons and PCA directions have no sign, so they may detect by
either sign (the larger of AUROC and 1 - AUROC, chosen on the selection half); SAE
features only by firing. That favours the baselines, so "SAE beats neuron" is conservative.

Frame AUROC cannot judge a sparse feature on a broad value: a feature that fires on 3% of
a "major" track's frames, and only there, still ranks 97% of them with the silent
negatives (AUROC ~0.53). So each unit is also judged on 1-second windows (its activation
max-pooled over the window; a window has a value when most of its frames do):

* ``purity``: of the ``purity_unit``'s top-50 windows on the evaluation half, the share
  that have the value (chance: ``purity_chance``, the value's share of windows). That unit
  is chosen by the same measure on the selection half (ties by window AUROC there);
* ``window_auroc``: that unit's AUROC over the evaluation half's windows, and
  ``purity_unit_auroc`` its frame AUROC there; ``purity_onset_error_ms`` the median error of
  its first frame over its best window threshold (selection half) against true entries.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from artifact_schemas import (
    ACTIVATION_INDEX,
    CLAP_VS_TRUTH,
    CONCEPTS,
    CORPUS_CONCEPTS,
    CORPUS_METADATA,
    LABELS,
    LABELS_VS_TRUTH,
    load_table,
    recorded_run,
    save_table,
)
from artifact_schemas.figures import save_figure, subplots
from artifact_schemas.settings import check_settings, setting
from sae_core.clap import ClapScorer
from sae_core.sae.data import ShardedActivations
from sae_core.sae.sparse_coder import SparseCoder
from sae_core.truth.match import clap_against_truth, labels_against_truth

log = logging.getLogger(__name__)

METHODS = ("sae", "neuron", "pca")
# metadata.csv columns that are not tags: identifiers, free text, numbers of the synthetic corpus.
_NOT_TAGS = {"track_id", "path", "caption", "tags", "seconds", "tempo_bpm", "drums_start_s", "lufs"}
_MAX_VALUES = 24  # a column with more distinct values is an identifier or free text, not a tag


@dataclass
class ConceptsConfig:
    """What ``concept_detection`` needs; validated on construction."""

    run: Path
    corpus: Path
    layers: tuple[int, ...] | None = None  # default: every layer with an SAE
    min_positive_frames: int = setting(20, ge=1)
    batch_size: int = setting(4096, ge=1)
    labels: Path | None = None  # labels.parquet (sae-core label): scored against the truth
    min_match_auroc: float = setting(
        0.9, ge=0.5, le=1
    )  # a feature "is" a concept's detector from this AUROC on
    min_match_purity: float = setting(0.9, ge=0, le=1)  # ... or from this purity (its top windows, see above)
    purity_top: int = setting(50, ge=1)  # windows behind purity
    clap: str | None = None  # a CLAP checkpoint: scores matched features' clips against the truth

    def __post_init__(self) -> None:
        check_settings(self)
        self.run, self.corpus = Path(self.run), Path(self.corpus)
        if self.labels is not None:
            self.labels = Path(self.labels)
            if not self.labels.is_file():
                raise ValueError(f"labels: no such file {self.labels} (sae-core label writes labels.parquet)")
        if not (self.run / "sae").is_dir() or not (self.run / "acts").is_dir():
            raise ValueError(f"run: {self.run} has no sae/ and acts/ (sae-core extract and train write them)")
        if not (self.corpus / "metadata.csv").is_file():
            raise ValueError(f"corpus: no metadata.csv in {self.corpus}")

    def layer_numbers(self) -> list[int]:
        found = sorted(int(p.name.split("_")[1]) for p in (self.run / "sae").glob("layer_*") if p.is_dir())
        if self.layers is None:
            if not found:
                raise ValueError(f"run: no sae/layer_* in {self.run}")
            return found
        missing = [layer for layer in self.layers if layer not in found]
        if missing:
            raise ValueError(f"layers: no SAE for layer(s) {missing} in {self.run / 'sae'} (have {found})")
        return list(self.layers)


def concept_spans(corpus: Path) -> pd.DataFrame:
    """Spans (track_id, concept, value, start_s, end_s) of every concept value.

    ``concepts.csv`` where the corpus has one (the synthetic corpus: drums change mid-track);
    otherwise every tag-like column of metadata.csv (a string column with 2 to 24 values)
    holds for its whole track.
    """
    if (corpus / "concepts.csv").is_file():
        return load_table(corpus / "concepts.csv", CORPUS_CONCEPTS)
    meta = load_table(corpus / "metadata.csv", CORPUS_METADATA)
    rows = []
    for column in meta.columns:
        values = meta[column]
        if column in _NOT_TAGS or values.dtype.kind not in "OSUb" or not 2 <= values.nunique() <= _MAX_VALUES:
            continue
        for track, value in zip(meta["track_id"], values.astype(str), strict=True):
            rows.append((str(track), column, value, 0.0, np.inf))
    if not rows:
        raise ValueError(f"corpus: neither concepts.csv nor a tag column in {corpus / 'metadata.csv'}")
    return pd.DataFrame(rows, columns=["track_id", "concept", "value", "start_s", "end_s"])


def frame_targets(index: pd.DataFrame, spans: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """For each (concept, value), which activation rows (frames) have it."""
    out: dict[tuple[str, str], np.ndarray] = {}
    tracks = index["track_id"].astype(str).to_numpy()
    times = index["time_s"].to_numpy()
    for (concept, value), group in spans.groupby(["concept", "value"], sort=True):
        mask = np.zeros(len(index), dtype=bool)
        for track, start, end in group[["track_id", "start_s", "end_s"]].itertuples(index=False):
            mask |= (tracks == str(track)) & (times >= start) & (times < end)
        out[(str(concept), str(value))] = mask
    return out


# An onset is the first frame from which the detector stays on for most of this stretch:
# one frame over threshold is noise, a concept that has entered stays.
ONSET_HOLD_S = 0.2
ONSET_SHARE = 0.8


def onset_errors_ms(
    score: np.ndarray,
    threshold: float,
    index: pd.DataFrame,
    entries: pd.DataFrame,
    frame_rate: float,
    hold_s: float = ONSET_HOLD_S,
) -> np.ndarray:
    """|detected onset - true entry| in ms for each entry (track_id, start_s > 0).

    ``score`` and ``index`` are the evaluation rows. The detected onset is the first frame
    at or after the track's start from which the score is >= ``threshold`` on at least 80%
    of the next ``hold_s`` (0: the first frame over it); a track where that never happens
    counts as detected at its end.
    """
    hold = max(1, round(hold_s * frame_rate))
    errors = []
    tracks = index["track_id"].astype(str).to_numpy()
    for track, start in entries[["track_id", "start_s"]].itertuples(index=False):
        rows = np.flatnonzero(tracks == str(track))
        if not len(rows):
            continue
        order = rows[np.argsort(index["time_s"].to_numpy()[rows])]
        times, on = index["time_s"].to_numpy()[order], score[order] >= threshold
        held = np.convolve(on.astype(float), np.ones(hold) / hold, mode="full")[hold - 1 :][: len(on)]
        found = np.flatnonzero((held >= ONSET_SHARE) & on)
        onset = times[found[0]] if len(found) else times[-1] + 1 / frame_rate
        errors.append(abs(onset - float(start)) * 1000)
    return np.asarray(errors)


def selection_half(track_ids: np.ndarray) -> np.ndarray:
    """True for rows of tracks in the selection half (stable hash of the track id)."""
    unique = np.unique(track_ids)
    half = {t for t in unique if hashlib.sha256(str(t).encode()).digest()[0] < 128}
    if not half or len(half) == len(unique):  # too few tracks: alternate them
        half = set(unique[::2])
    return np.isin(track_ids, list(half))


def aurocs(scores: np.ndarray, positive: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """AUROC of every column of ``scores`` [rows, units] as a detector of ``positive``.

    The Mann-Whitney form, (rank sum of positives - n+(n+ + 1)/2) / (n+ n-), with average
    ranks for ties, computed for all columns at once (per-column calls to sklearn's
    roc_auc_score are ~100x slower on hundreds of features); pass ``ranks`` to reuse them.
    """
    ranks = rankdata(scores, axis=0) if ranks is None else ranks
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], np.nan)
    return np.asarray((ranks[positive].sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(score: np.ndarray, positive: np.ndarray) -> float:
    """The threshold (score >= t is a detection) of best F1, from up to 200 quantiles."""
    candidates = np.unique(np.quantile(score, np.linspace(0, 1, 201)))
    best, best_f1 = float(candidates[-1]), -1.0
    for t in candidates:
        hit = score >= t
        tp = float((hit & positive).sum())
        f1 = 2 * tp / max(float(hit.sum()) + float(positive.sum()), 1.0)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


WINDOW_S = 1.0  # the window purity and window AUROC judge units on


@dataclass(frozen=True)
class Windows:
    """Frames grouped into windows (track, 1-second slot): ``order`` sorts the frames by
    window, ``starts`` are each window's first position in that order."""

    order: np.ndarray
    starts: np.ndarray
    select: np.ndarray  # per window: in the selection half

    @classmethod
    def of(cls, index: pd.DataFrame, select: np.ndarray) -> Windows:
        slot = np.floor(index["time_s"].to_numpy() / WINDOW_S).astype(np.int64)
        key, _ = pd.factorize(pd.Series(index["track_id"].astype(str).to_numpy()) + "|" + slot.astype(str))
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(key[order]) != 0])
        return cls(order, starts, select[order][starts])

    def max(self, scores: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(scores[self.order], self.starts, axis=0)

    def mean(self, scores: np.ndarray) -> np.ndarray:
        counts = np.diff(np.r_[self.starts, len(self.order)])
        sums = np.add.reduceat(scores[self.order].astype(float), self.starts, axis=0)
        return sums / (counts[:, None] if sums.ndim == 2 else counts)

    def has(self, positive: np.ndarray) -> np.ndarray:
        """Windows where most frames have the value."""
        return self.mean(positive) >= 0.5


def top_purity(pooled: np.ndarray, positive: np.ndarray, top: int) -> np.ndarray:
    """For every column of ``pooled`` [windows, units]: the share of ``positive`` windows
    among its ``top`` highest. Ties at the cut share the remaining places (the expected
    share under a random order of the tied windows): a unit silent on most windows must
    not score by which silent windows come first. NaN with fewer than ``top`` windows."""
    n = pooled.shape[0]
    if n < top:
        return np.full(pooled.shape[1], np.nan)
    cut = np.partition(pooled, n - top, axis=0)[n - top]
    above, equal = pooled > cut, pooled == cut
    pos = positive[:, None]
    n_above = above.sum(axis=0)
    hits = (above & pos).sum(axis=0) + (equal & pos).sum(axis=0) * (top - n_above) / equal.sum(axis=0)
    return np.asarray(hits / top, dtype=float)


def _units(source: ShardedActivations, sae: SparseCoder, batch_size: int) -> dict[str, np.ndarray]:
    """Every frame's SAE feature activations, neurons and PCA projections, [frames, units]."""
    acts = torch.cat([source.load_shard(i) for i in range(len(source.shards))])
    codes = torch.zeros(len(acts), sae.cfg.num_latents)
    for start in range(0, len(acts), batch_size):
        out = sae.encode(acts[start : start + batch_size])
        codes[start : start + batch_size].scatter_(1, out.latent_indices, out.latent_acts)
    x = acts.numpy().astype(np.float64)
    centred = x - x.mean(axis=0)
    # PCA by SVD of the centred activations: the principal directions of the same frames.
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return {"sae": codes.numpy(), "neuron": x, "pca": centred @ vt.T}


def concept_detection(cfg: ConceptsConfig) -> pd.DataFrame:
    """One row per (layer, concept, value, method): the best unit, chosen on one half of the
    tracks, with its AUROC, precision and recall on the other half."""
    spans = concept_spans(cfg.corpus)
    rows = []
    thin: dict[str, int] = {}  # values with fewer evaluation windows than purity_top
    for layer in cfg.layer_numbers():
        layer_dir = cfg.run / "acts" / f"layer_{layer}"
        index = load_table(layer_dir / "index.parquet", ACTIVATION_INDEX)
        source = ShardedActivations(layer_dir, holdout_fraction=0.0, index=index)
        sae = SparseCoder.load_from_disk(cfg.run / "sae" / f"layer_{layer}")
        units = _units(source, sae, cfg.batch_size)
        select = selection_half(index["track_id"].astype(str).to_numpy())
        targets = frame_targets(index, spans)
        frame_rate = float(source.meta.get("frame_rate", 50.0))
        eval_index = index[~select].reset_index(drop=True)
        # Values that begin mid-track (drums entering), per target: the entries to time.
        late = spans[
            (spans["start_s"] > 0)
            & spans["track_id"].astype(str).isin(set(eval_index["track_id"].astype(str)))
        ]
        entries = {(str(c), str(v)): g for (c, v), g in late.groupby(["concept", "value"])}
        no_entries = late.iloc[:0]
        windows = Windows.of(index, select)
        w_sel = windows.select
        # Which windows have each value: the same for every method, so computed once.
        window_targets = {target: windows.has(positive) for target, positive in targets.items()}
        for method, scores in units.items():
            sel_scores, eval_scores = scores[select], scores[~select]
            sel_ranks = rankdata(sel_scores, axis=0)  # once per method: shared by every concept
            # Window maxima; a unit without a sign may detect by going low (its negated minima).
            pooled = windows.max(scores)
            if method != "sae":
                pooled = np.concatenate([pooled, windows.max(-scores)], axis=1)
            pooled_ranks = rankdata(pooled[w_sel], axis=0)
            for (concept, value), positive in targets.items():
                pos_s, pos_e = positive[select], positive[~select]
                if min(pos_s.sum(), pos_e.sum(), (~pos_s).sum(), (~pos_e).sum()) < cfg.min_positive_frames:
                    continue  # too few frames on one side of a half to score a detector
                chosen = aurocs(sel_scores, pos_s, sel_ranks)
                signed = np.maximum(chosen, 1 - chosen) if method != "sae" else chosen
                unit = int(np.nanargmax(signed))
                sign = -1.0 if method != "sae" and chosen[unit] < 0.5 else 1.0
                threshold = best_threshold(sign * sel_scores[:, unit], pos_s)
                test_scores = sign * eval_scores[:, unit]
                auc = aurocs(test_scores[:, None], pos_e)[0]
                hit = test_scores >= threshold
                # How close is the detected onset to each true entry?
                timed = entries.get((concept, value), no_entries)
                errors = onset_errors_ms(test_scores, threshold, eval_index, timed, frame_rate)
                has = window_targets[(concept, value)]
                n_units = scores.shape[1]
                column = unit + (n_units if sign < 0 else 0)
                sel_purity = top_purity(pooled[w_sel], has[w_sel], cfg.purity_top)
                sel_window_auc = aurocs(pooled[w_sel], has[w_sel], pooled_ranks)
                best = (
                    int(np.lexsort((np.nan_to_num(sel_window_auc), np.nan_to_num(sel_purity, nan=-1.0)))[-1])
                    if np.isfinite(sel_purity).any()
                    else column
                )
                purity = top_purity(pooled[~w_sel][:, [best]], has[~w_sel], cfg.purity_top)[0]
                window_auc = aurocs(pooled[~w_sel][:, [best]], has[~w_sel])[0]
                # The purity unit's onset: its first frame over the level that best tells the
                # value's windows from the others on the selection half (best F1 of the window
                # maxima). A sparse event detector, a drum-hit feature, is never on for 80% of
                # 200 ms, but its first hit over that level marks the entry.
                level = best_threshold(pooled[w_sel][:, best], has[w_sel])
                p_sign = -1.0 if best >= n_units else 1.0
                p_scores = p_sign * eval_scores[:, best % n_units]
                p_errors = onset_errors_ms(p_scores, level, eval_index, timed, frame_rate, hold_s=0.0)
                if int(has[~w_sel].sum()) < cfg.purity_top:
                    thin[f"{concept}={value}"] = int(has[~w_sel].sum())
                rows.append(
                    {
                        "layer": layer,
                        "concept": concept,
                        "value": value,
                        "method": method,
                        "unit": unit,
                        "sign": sign,
                        "auroc": float(auc),
                        "auroc_select": float(signed[unit]),
                        "threshold": threshold,
                        "precision": float((hit & pos_e).sum() / max(hit.sum(), 1)),
                        "recall": float((hit & pos_e).sum() / max(pos_e.sum(), 1)),
                        "n_positive": int(pos_e.sum()),
                        "n_frames": int((~select).sum()),
                        "onset_error_ms": float(np.median(errors)) if len(errors) else np.nan,
                        "n_onsets": len(errors),
                        "window_auroc": float(window_auc),
                        "purity_unit": best % n_units,
                        "purity_sign": p_sign,
                        "purity": float(purity),
                        "purity_unit_auroc": float(aurocs(p_scores[:, None], pos_e)[0]),
                        "purity_chance": float(has[~w_sel].mean()),
                        "purity_onset_error_ms": float(np.median(p_errors)) if len(p_errors) else np.nan,
                        "n_windows": int((~w_sel).sum()),
                    }
                )
        log.info("layer %d: %d concept values scored", layer, len(targets))
    if thin:
        log.warning(
            "%d concept values hold in fewer than purity_top=%d evaluation windows, so their purity "
            "cannot reach 1 (use more tracks): %s",
            len(thin),
            cfg.purity_top,
            ", ".join(f"{name} ({n})" for name, n in thin.items()),
        )
    if not rows:
        raise ValueError(
            f"corpus: no concept value has {cfg.min_positive_frames} frames on both sides of both "
            "halves of the tracks (min_positive_frames)"
        )
    return pd.DataFrame(rows)


def write_concepts(cfg: ConceptsConfig, out: Path | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Score the run (:func:`concept_detection`) and write ``concepts.parquet`` and the
    layer x concept heatmap (PNG + SVG) into ``out`` (default ``RUN/concepts``)."""
    out = Path(out) if out is not None else cfg.run / "concepts"
    table = concept_detection(cfg)
    out.mkdir(parents=True, exist_ok=True)
    written = [save_table(table, out / "concepts.parquet", CONCEPTS)]
    if cfg.labels is not None:
        truth = labels_against_truth(
            table, load_table(cfg.labels, LABELS), cfg.min_match_auroc, cfg.min_match_purity
        )
        written.append(save_table(truth, out / "labels_vs_truth.parquet", LABELS_VS_TRUTH))
    if cfg.clap is not None:
        scorer = ClapScorer.load(cfg.clap)
        heard = clap_against_truth(
            table, cfg.run / "features", scorer, cfg.min_match_auroc, cfg.min_match_purity
        )
        written.append(save_table(heard, out / "clap_vs_truth.parquet", CLAP_VS_TRUTH))
    sae = table[table["method"] == "sae"].assign(name=lambda d: d["concept"] + "=" + d["value"])
    grid = sae.pivot_table(index="name", columns="layer", values="auroc")
    fig, ax = subplots(figsize=(1.2 + 0.9 * grid.shape[1], 0.8 + 0.28 * grid.shape[0]))
    image = ax.imshow(grid.to_numpy(), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"layer {c}" for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), list(grid.index))
    for (i, j), v in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(v):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.8 else "black"
            )
    fig.colorbar(image, ax=ax, label="AUROC of the best SAE feature (held-out tracks)")
    ax.set_title("Which layer knows what")
    written += save_figure(fig, out, "concepts_heatmap")
    return table, written


def run_concepts(cfg: ConceptsConfig, out: Path | None = None) -> pd.DataFrame:
    """The ``concepts`` stage: :func:`write_concepts` and run.json in ``out`` (default ``RUN/concepts``)."""
    target = Path(out) if out is not None else cfg.run / "concepts"
    inputs = [cfg.run / "sae", cfg.corpus, *([cfg.labels] if cfg.labels else [])]
    if cfg.clap is not None and Path(cfg.clap).is_dir():
        inputs.append(Path(cfg.clap))
    config = {"layers": cfg.layers, "clap": cfg.clap}
    with recorded_run(target, "concepts", config=config, inputs=inputs):
        table, _ = write_concepts(cfg, target)
    return table


def layer_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean AUROC over concept values, one row per layer, one column per method."""
    return table.groupby(["layer", "method"])["auroc"].mean().unstack()


def findings(table: pd.DataFrame, cfg: ConceptsConfig, out: Path) -> list[str]:
    """What a reader looks for first, in words: the best detector, onset errors, and (when
    ``cfg`` asked for them; read from ``out``) how often labels name and CLAP hears the
    matched concepts."""
    sae = table[table["method"] == "sae"]
    lines = [
        f"best: layer {r.layer} feature {r.unit} detects {r.concept}={r.value} (AUROC {r.auroc:.3f})"
        for r in sae.nlargest(1, "auroc").itertuples()
    ]
    lines += [
        f"layer {r.layer}: {r.concept}={r.value} begins mid-track in {r.n_onsets} tracks; "
        f"detected onset off by {r.onset_error_ms:.0f} ms (median)"
        for r in sae[sae["onset_error_ms"].notna()].itertuples()
    ]
    if cfg.labels is not None:
        truth = pd.read_parquet(out / "labels_vs_truth.parquet")
        lines += [
            f"labels: {labeler} names the concept of {int(group['names_concept'].sum())} of "
            f"{len(group)} matched features ({group['names_concept'].mean():.0%})"
            for labeler, group in truth.groupby("labeler")
        ]
    if cfg.clap is not None:
        heard = pd.read_parquet(out / "clap_vs_truth.parquet").dropna(subset=["true_wins"])
        lines.append(
            f"CLAP: the true words beat the best foil for {int(heard['true_wins'].sum())} of "
            f"{len(heard)} matched features with clips"
        )
    return lines
