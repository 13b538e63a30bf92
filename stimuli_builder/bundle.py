"""Read a ``sae_core`` run directory and select the features a study asks about."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from artifact_schemas import EXAMPLES, FEATURES, LABELS, STEERING, ArtifactError, load_table
from stimuli_builder.config import StudyConfig


@dataclass(frozen=True)
class TargetLabel:
    """The label one labeler proposed for a feature (its most confident one)."""

    labeler: str
    label: str
    clap_score: float | None


@dataclass(frozen=True)
class SteeringCondition:
    strength: float
    prompt: str
    seed: int
    steered: Path
    baseline: Path
    random: Path | None
    # Log-mel distances (dB) from the baseline that sae-core steer measured; None in runs
    # from before it did (stimuli_builder.design.check_audible refuses those by default).
    steered_db: float | None = None
    random_db: float | None = None


@dataclass
class SelectedFeature:
    layer: int
    feature_id: int
    examples: list[Path]
    labels: list[TargetLabel] = field(default_factory=list)
    # Every label of the feature, any labeler: never used as a foil for it.
    all_labels: set[str] = field(default_factory=set)
    steering: list[SteeringCondition] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.layer}:{self.feature_id}"

    @property
    def score(self) -> float:
        scores = [t.clap_score for t in self.labels if t.clap_score is not None]
        return max(scores) if scores else float("-inf")


@dataclass
class Bundle:
    """The tables of one run directory (paths made absolute)."""

    root: Path
    features: pd.DataFrame
    examples: pd.DataFrame
    labels: pd.DataFrame | None
    steering: pd.DataFrame | None
    # Stage directories / files whose run records become the package's parents.
    inputs: list[Path]

    def parents(self) -> list[dict[str, Any]]:
        """Run records the inputs' directories do not hold: the labels stage writes a file
        (``labels.parquet``) and its record beside it (``labels.run.json``)."""
        labels_run = self.root / "labels.run.json"
        return [json.loads(labels_run.read_text())] if labels_run.is_file() else []


def load_bundle(root: str | Path) -> Bundle:
    """Read ``root/features/layer_*/``, ``root/labels.parquet`` and ``root/steering/``."""
    root = Path(root)
    layer_dirs = sorted(p for p in (root / "features").glob("layer_*") if p.is_dir())
    if not layer_dirs:
        raise ArtifactError(root, None, "a run directory with features/layer_*/ (from 'sae-core features')")
    feats, exs = [], []
    for d in layer_dirs:
        feats.append(load_table(d / "features.parquet", FEATURES))
        ex = load_table(d / "examples.parquet", EXAMPLES)
        ex["path"] = [str(d / p) for p in ex["path"]]
        exs.append(ex)
    inputs: list[Path] = list(layer_dirs)
    labels = None
    if (root / "labels.parquet").is_file():
        labels = load_table(root / "labels.parquet", LABELS)
        inputs.append(root / "labels.parquet")
    steering = None
    steer_dir = root / "steering"
    if (steer_dir / "steering.parquet").is_file():
        steering = load_table(steer_dir / "steering.parquet", STEERING)
        for col in ("path", "baseline_path", "random_path"):
            steering[col] = [None if p is None or pd.isna(p) else str(steer_dir / p) for p in steering[col]]
        inputs.append(steer_dir)
    return Bundle(root, pd.concat(feats), pd.concat(exs), labels, steering, inputs)


def select_features(bundle: Bundle, config: StudyConfig, config_path: str | Path) -> list[SelectedFeature]:
    """Apply the config's ``[features]`` rules; best-scoring features first.

    Raises :class:`ArtifactError` naming the config key when the rules leave
    nothing to ask about or name a feature the run does not have.
    """
    fc, lv, st = config.features, config.label_validation, config.steering
    need_examples = max(lv.examples_per_trial if lv.enabled else 0, st.references if st.enabled else 0, 1)
    kept = bundle.features[bundle.features["kept"]]
    candidates = {(int(a), int(b)) for a, b in zip(kept["layer"], kept["feature_id"], strict=True)}
    if fc.layers:
        candidates = {c for c in candidates if c[0] in fc.layers}
    if fc.ids:
        wanted = {(int(a), int(b)) for a, b in (s.split(":") for s in fc.ids)}
        missing = sorted(wanted - candidates)
        if missing:
            raise ArtifactError(
                config_path,
                "features.ids",
                f"kept features of run {bundle.root} (in the selected layers)",
                [f"{a}:{b}" for a, b in missing],
            )
        candidates = wanted

    examples = bundle.examples.sort_values(["layer", "feature_id", "rank"])
    example_paths: dict[tuple[int, int], list[Path]] = {}
    for layer, fid, path in zip(examples["layer"], examples["feature_id"], examples["path"], strict=True):
        example_paths.setdefault((int(layer), int(fid)), []).append(Path(path))
    selected: dict[tuple[int, int], SelectedFeature] = {}
    for c in sorted(candidates):
        paths = example_paths.get(c, [])
        if len(paths) >= need_examples:
            selected[c] = SelectedFeature(c[0], c[1], paths)

    if lv.enabled and bundle.labels is not None:
        _attach_labels(selected, bundle.labels, fc.labelers, fc.min_clap_score)
    if st.enabled and bundle.steering is not None:
        _attach_steering(selected, bundle.steering, config)
    usable = [f for f in selected.values() if (lv.enabled and f.labels) or (st.enabled and f.steering)]
    if not usable:
        raise ArtifactError(
            config_path,
            "features",
            f"rules that leave at least one feature of {bundle.root} with examples "
            f"(>= {need_examples}) and labels or steering pairs",
            fc.model_dump(),
        )
    usable.sort(key=lambda f: (-f.score, f.layer, f.feature_id))
    return _limit(usable, fc.max_per_layer, fc.max_features, fc.stratify_by_layer)


def _attach_labels(
    selected: dict[tuple[int, int], SelectedFeature],
    labels: pd.DataFrame,
    labelers: list[str],
    min_clap: float | None,
) -> None:
    for feature_key, group in labels.groupby(["layer", "feature_id"]):
        layer, fid = cast(tuple[int, int], feature_key)
        feat = selected.get((int(layer), int(fid)))
        if feat is None:
            continue
        feat.all_labels = set(group["label"])
        for labeler, rows in sorted(group.groupby("labeler"), key=lambda x: str(x[0])):
            if labelers and labeler not in labelers:
                continue
            if min_clap is not None:
                rows = rows[rows["clap_score"].fillna(-1.0) >= min_clap]
            if rows.empty:
                continue
            best = rows.sort_values(
                ["confidence", "clap_score", "label"], ascending=[False, False, True], na_position="last"
            ).iloc[0]
            clap = None if pd.isna(best["clap_score"]) else float(best["clap_score"])
            feat.labels.append(TargetLabel(str(labeler), str(best["label"]), clap))


def _attach_steering(
    selected: dict[tuple[int, int], SelectedFeature], steering: pd.DataFrame, config: StudyConfig
) -> None:
    st = config.steering
    rows: list[dict[str, Any]] = steering.sort_values(  # type: ignore[assignment]
        ["layer", "feature_id", "strength", "prompt", "seed"]
    ).to_dict("records")
    for r in rows:
        feat = selected.get((int(r["layer"]), int(r["feature_id"])))
        if feat is None:
            continue
        if st.strengths and float(r["strength"]) not in st.strengths:
            continue
        if (st.prompts and r["prompt"] not in st.prompts) or (st.seeds and int(r["seed"]) not in st.seeds):
            continue
        random = r["random_path"]
        if st.mode == "three_way" and random is None:
            continue
        feat.steering.append(
            SteeringCondition(
                float(r["strength"]),
                str(r["prompt"]),
                int(r["seed"]),
                Path(r["path"]),
                Path(r["baseline_path"]),
                Path(random) if random is not None else None,
                _distance(r.get("steered_db")),
                _distance(r.get("random_db")),
            )
        )


def _distance(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _limit(
    features: list[SelectedFeature], per_layer: int | None, total: int | None, stratify: bool
) -> list[SelectedFeature]:
    by_layer: dict[int, list[SelectedFeature]] = {}
    for f in features:
        by_layer.setdefault(f.layer, []).append(f)
    if per_layer is not None:
        by_layer = {k: v[:per_layer] for k, v in by_layer.items()}
    if stratify:
        # Round-robin over layers so a layer with higher scores cannot crowd out the others.
        out: list[SelectedFeature] = []
        queues = [list(v) for _, v in sorted(by_layer.items())]
        while any(queues):
            for q in queues:
                if q:
                    out.append(q.pop(0))
    else:
        out = sorted(
            (f for v in by_layer.values() for f in v), key=lambda f: (-f.score, f.layer, f.feature_id)
        )
    return out[:total] if total is not None else out
