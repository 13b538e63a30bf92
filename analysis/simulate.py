"""A pure-Python simulated export with known true effects (for tests and the benchmark).

The bot participants of ``study-app simulate`` produce realistic exports through
the real app; this produces statistically controlled ones fast: each feature has a
true label accuracy and a true steering detection rate, and each simulated
participant answers by those probabilities.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from artifact_schemas import RESPONSES

LABELS = [
    "bright",
    "dark",
    "fast",
    "slow",
    "loud",
    "quiet",
    "warm",
    "harsh",
    "sparse",
    "dense",
    "major",
    "minor",
]


def simulate_export(
    n_participants: int = 40,
    n_features: int = 12,
    *,
    accuracy: np.ndarray | None = None,
    steer_rate: np.ndarray | None = None,
    n_options: int = 4,
    layers: tuple[int, ...] = (3, 6),
    strengths: tuple[float, ...] = (0.5, 1.0, 2.0),
    three_way: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Every participant sees every feature once per trial type (choice, rating per labeler, steering)."""
    rng = np.random.default_rng(seed)
    acc = np.asarray(accuracy if accuracy is not None else rng.uniform(0.3, 0.9, n_features))
    steer = np.asarray(steer_rate if steer_rate is not None else rng.uniform(0.3, 0.8, n_features))
    clap = np.clip(0.2 + 0.5 * acc + rng.normal(0, 0.05, n_features), -1, 1)
    rows: list[dict[str, object]] = []
    empty = dict.fromkeys(RESPONSES.column_names)
    for p in range(n_participants):
        session = {
            **empty,
            "schema_version": RESPONSES.version,
            "study_id": "sim",
            "session_id": f"s{p}",
            "participant": f"{p:064x}",
            "list_id": f"l{p % 4}",
            "phase": "main",
            "attempt": 0,
            "play_counts": json.dumps({"c": 1}),
            "server_ts": "2026-11-24T10:00:00Z",
            "session_status": "completed",
            "screening_passed": True,
            "attention_correct": 1.0,
            "session_started": "2026-11-24T09:50:00Z",
            "session_finished": "2026-11-24T10:10:00Z",
            "duration_s": 1200.0,
            "user_agent": "sim",
            "screen": "1920x1080",
            "data_source": "simulated",
        }
        start = len(rows)
        for f in range(n_features):
            layer = layers[f % len(layers)]
            target = LABELS[f % len(LABELS)]
            base = {**session, "feature_id": f, "layer": layer, "clap_score": float(clap[f]), "label": target}
            right = bool(rng.random() < acc[f])
            foils = [x for x in LABELS if x != target]
            chosen = target if right else foils[int(rng.integers(len(foils)))]
            rows.append(
                {
                    **base,
                    "trial_id": f"c{f}",
                    "trial_type": "label_choice",
                    "answer": f"o{int(right)}",
                    "answer_text": chosen,
                    "correct": right,
                    "correct_option": "o1",
                    "correct_text": target,
                    "labeler": "descriptors",
                }
            )
            for labeler, shift in (("descriptors", 0.0), ("clap-vocab", -0.5)):
                rating = int(np.clip(np.rint(1 + 4 * acc[f] + shift + rng.normal(0, 0.8)), 1, 5))
                rows.append(
                    {
                        **base,
                        "trial_id": f"r{f}{labeler}",
                        "trial_type": "label_rating",
                        "rating": float(rating),
                        "labeler": labeler,
                    }
                )
            roles = ["steered", "baseline", "random_direction"] if three_way else ["steered", "baseline"]
            hit = bool(rng.random() < steer[f])
            role = "steered" if hit else roles[1 + int(rng.integers(len(roles) - 1))]
            rows.append(
                {
                    **base,
                    "trial_id": f"st{f}",
                    "trial_type": "steering",
                    "answer": f"o{roles.index(role)}",
                    "answer_role": role,
                    "answer_text": f"Clip {'ABC'[roles.index(role)]}",
                    "correct": hit,
                    "correct_option": "o0",
                    "strength": float(strengths[f % len(strengths)]),
                    "prompt": "Simple melody",
                    "seed": 0,
                    "label": None,
                    "clap_score": None,
                }
            )
        for i, row in enumerate(rows[start:]):
            row["position"] = i
        for row in rows[start:]:
            row["rt_ms"] = float(rng.lognormal(7.8, 0.4))
    return RESPONSES.validate(pd.DataFrame(rows, columns=RESPONSES.column_names))
