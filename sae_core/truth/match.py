"""Matching SAE features to the corpus's concept values, and asking whether the labelers
and CLAP name them (issue 18.3).

A feature is *matched* to ``concept=value`` when its held-out AUROC (or purity) says it
detects that value (:func:`matched_features`). A labeler names it when its top label
contains the value's words (:func:`names_concept`). CLAP hears it when the feature's example
clips (``features/layer_<l>/examples.parquet``, what listeners and labelers hear) score
higher against the value's words ("minor key") than against every other value's, the foils
("major key") (:func:`clap_against_truth`). A CLAP that has learned the concept scores the
true words above the best foil; with the random tiny CLAP the winner is a coin toss, which
is what that table should then say.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artifact_schemas import CLAP_VS_TRUTH, EXAMPLES, load_table

# The words a label must contain to name a concept value: the descriptor labeler's words
# for the synthetic corpus's concepts. Any other (concept, value), e.g. a genre tag column
# of a real corpus, is named by a label containing the value's own words.
_CONCEPT_WORDS = {
    "tempo": "{} tempo",
    "mode": "{} key",
    "register": "{} pitched",
}
# Values without a word: the absence of something, or the middle of a scale.
_UNNAMEABLE = {("drums", "no"), ("register", "mid"), ("tempo", "medium")}
_DRUM_WORDS = ("drums", "percussive")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9#]+", text.lower()))


def names_concept(label: str, concept: str, value: str) -> bool:
    """Does ``label`` name ``concept=value``? ("minor key" names mode=minor; "A minor" names
    key=A; "jazz" names genre=jazz; "percussive" or "drums" name drums=yes.)"""
    words = _words(label)
    if concept == "drums" and value == "yes":
        return any(w in words for w in _DRUM_WORDS)
    if concept == "key":
        return label.strip().lower().split(" ")[0] == value.lower()
    return _words(_CONCEPT_WORDS.get(concept, "{}").format(value)) <= words


def matched_features(table: pd.DataFrame, min_auroc: float = 0.9, min_purity: float = 0.9) -> pd.DataFrame:
    """The SAE rows of a concepts table whose feature is matched to its value, for a value a
    word can name: the best SAE unit of its layer by held-out AUROC when that is >=
    ``min_auroc``, and the best by purity (as ``unit``, its AUROC as ``auroc``) when its
    held-out purity is >= ``min_purity`` (a sparse feature that fires only where the value
    holds: its frame AUROC stays low) where no unit reaches ``min_auroc``. One row per
    (layer, value)."""
    sae = table[table["method"] == "sae"]
    matched = sae[sae["auroc"] >= min_auroc]
    if "purity" in sae.columns:
        pure = sae[sae["purity"] >= min_purity].assign(
            unit=lambda d: d["purity_unit"], auroc=lambda d: d["purity_unit_auroc"]
        )
        # One feature per (layer, value): the AUROC match where there is one (it is also
        # steered under layer_L/concept=value, so a second feature there would collide).
        matched = pd.concat([matched, pure]).drop_duplicates(["layer", "concept", "value"])
    # A boolean array, not a list: an empty list would select no columns, not no rows.
    nameable = [(c, v) not in _UNNAMEABLE for c, v in zip(matched["concept"], matched["value"], strict=True)]
    return matched[np.array(nameable, dtype=bool)]


def concept_phrase(concept: str, value: str) -> str:
    """The words for ``concept=value`` that labels and CLAP prompts use: 'minor key',
    'fast tempo', 'high pitched', 'drums' / 'without drums', 'A key', or the value itself."""
    if concept == "drums":
        return "drums" if value == "yes" else "without drums"
    if concept == "key":
        return f"{value} key"
    return _CONCEPT_WORDS.get(concept, "{}").format(value)


def labels_against_truth(
    table: pd.DataFrame, labels: pd.DataFrame, min_auroc: float = 0.9, min_purity: float = 0.9
) -> pd.DataFrame:
    """For every SAE feature matched to a concept value (the best SAE unit of its layer,
    held-out AUROC >= ``min_auroc``) and every labeler: the feature's top label (highest
    confidence) and whether it names the value. A matched feature the labeler left
    unlabelled counts as not named."""
    matched = matched_features(table, min_auroc, min_purity)
    top = (
        labels.sort_values("confidence", ascending=False, kind="stable")
        .drop_duplicates(["layer", "feature_id", "labeler"])
        .set_index(["layer", "feature_id", "labeler"])["label"]
    )
    rows = []
    records = matched[["layer", "concept", "value", "unit", "auroc"]].to_dict("records")
    for labeler in sorted(str(x) for x in labels["labeler"].unique()):
        for r in records:
            layer, concept, value, unit = int(r["layer"]), str(r["concept"]), str(r["value"]), int(r["unit"])
            label = top.get((layer, unit, labeler))
            rows.append(
                {
                    "layer": layer,
                    "concept": concept,
                    "value": value,
                    "feature_id": unit,
                    "auroc": float(r["auroc"]),
                    "labeler": labeler,
                    "label": None if label is None else str(label),
                    "names_concept": label is not None and names_concept(str(label), concept, value),
                }
            )
    columns = ["layer", "concept", "value", "feature_id", "auroc", "labeler", "label", "names_concept"]
    return pd.DataFrame(rows, columns=columns)


CLAP_COLUMNS = [c.name for c in CLAP_VS_TRUTH.columns]


def clap_against_truth(
    table: pd.DataFrame, features_root: Path, scorer: Any, min_auroc: float = 0.9, min_purity: float = 0.9
) -> pd.DataFrame:
    """One row per matched feature: the mean CLAP similarity of its example clips to the
    true value's words and to the best foil's (``scorer``: a ``clap.ClapScorer``).

    A matched feature without example clips (the features stage filtered it out) has
    ``n_clips`` 0 and no scores; a concept with one value has no foil and no winner.
    """
    values = table.groupby("concept")["value"].unique().to_dict()
    examples: dict[int, pd.DataFrame] = {}
    rows: list[dict[str, Any]] = []
    for r in matched_features(table, min_auroc, min_purity).to_dict("records"):
        layer, concept, value, feature = int(r["layer"]), str(r["concept"]), str(r["value"]), int(r["unit"])
        if layer not in examples:
            path = features_root / f"layer_{layer}" / "examples.parquet"
            if not path.is_file():
                raise ValueError(
                    f"features: no {path}; CLAP hears a feature through its example clips "
                    "(sae-core features writes them)"
                )
            examples[layer] = load_table(path, EXAMPLES)
        clips = examples[layer].loc[examples[layer]["feature_id"] == feature, "path"]
        paths = [features_root / f"layer_{layer}" / str(p) for p in clips]
        text = concept_phrase(concept, value)
        foils = [concept_phrase(concept, str(v)) for v in values[concept] if str(v) != value]
        row: dict[str, Any] = {
            "layer": layer, "concept": concept, "value": value, "feature_id": feature,
            "auroc": float(r["auroc"]), "n_clips": len(paths), "text": text,
            "clap_true": None, "best_foil": None, "clap_best_foil": None, "true_wins": None,
        }  # fmt: skip
        if paths:
            scores = scorer.similarity([text, *foils], paths).mean(axis=1)
            row["clap_true"] = float(scores[0])
            if foils:
                best = int(np.argmax(scores[1:]))
                row |= {"best_foil": foils[best], "clap_best_foil": float(scores[1 + best])}
                row["true_wins"] = bool(scores[0] > scores[1 + best])
        rows.append(row)
    return pd.DataFrame(rows, columns=CLAP_COLUMNS)
