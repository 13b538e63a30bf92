"""Does CLAP hear the concept a feature detects? (issue 18.3, second half.)

For every SAE feature matched to a concept value (``concepts.matched_features``), the
feature's example clips (``features/layer_<l>/examples.parquet``, what listeners and
labelers hear) are scored by CLAP against the value's words ("minor key") and against the
words of every other value of the same concept, the foils ("major key"). A CLAP that has
learned the concept scores the true words above the best foil; with the random tiny CLAP
the winner is a coin toss, which is what this table should then say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from artifact_schemas import CLAP_VS_TRUTH, EXAMPLES, load_table
from sae_core.concepts import concept_phrase, matched_features

COLUMNS = [c.name for c in CLAP_VS_TRUTH.columns]


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
    return pd.DataFrame(rows, columns=COLUMNS)
