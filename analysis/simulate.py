"""A pure-Python simulated export with known true effects (for tests and the benchmark).

The bot participants of ``study-app simulate`` produce realistic exports through
the real app; this produces statistically controlled ones fast: each feature has a
true label accuracy and a true steering detection rate, and each simulated
participant answers by those probabilities.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

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
    for p in range(n_participants):
        session = _session(p, f"l{p % 4}")
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
                    "n_options": n_options,
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
                    "n_options": len(roles),
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


class SliderStudy(NamedTuple):
    """A simulated export of slider trials and the expected rating it was drawn from."""

    responses: pd.DataFrame
    """The export: one row per trial, ``sliders`` as the study app writes it."""
    truth: pd.DataFrame
    """Per item and condition: ``expected``, the mean rating over the population of assessors
    (clipping to the scale included), which the report's per-condition means estimate."""


MUSHRA_MEANS = {"reference": 95.0, "lp3500": 25.0, "codec_a": 70.0, "codec_b": 50.0}


def simulate_slider_export(
    n_participants: int = 20,
    n_items: int = 8,
    *,
    means: dict[str, float] | None = None,
    anchors: tuple[str, ...] = ("lp3500",),
    trial_type: str = "mushra",
    participant_sd: float = 6.0,
    item_sd: float = 6.0,
    interaction_sd: float = 5.0,
    noise_sd: float = 8.0,
    reference_sd: float = 3.0,
    seed: int = 0,
) -> SliderStudy:
    """Every assessor rates every item under every condition on a 0-100 slider.

    ``mushra``: one trial per item with every condition on its screen, in a random order;
    ``slider``: one trial per item and condition. A condition's rating is its mean
    (``means``; the hidden reference is "reference", the names in ``anchors`` are anchors)
    plus the assessor's leniency (``participant_sd``), the item's effect on that condition
    (``item_sd``, drawn once per study: the items are the study's own), the assessor's
    view of the condition (``interaction_sd``) and noise, rounded and clipped to 0-100.
    The hidden reference is near the ceiling for everyone: its mean plus ``reference_sd``
    noise only.
    """
    rng = np.random.default_rng(seed)
    means = dict(MUSHRA_MEANS if means is None else means)
    names = list(means)
    mean = np.array([means[c] for c in names])
    is_ref = np.array([c == "reference" for c in names])
    item = np.where(is_ref, 0.0, rng.normal(0, item_sd, (n_items, len(names))))  # [items, conditions]
    spread = np.where(is_ref, reference_sd, np.sqrt(participant_sd**2 + interaction_sd**2 + noise_sd**2))
    centre = mean + item
    low, high = (0 - centre) / spread, (100 - centre) / spread
    expected = (  # E[clip(X, 0, 100)], X ~ N(centre, spread^2)
        100 * stats.norm.sf(high)
        + centre * (stats.norm.cdf(high) - stats.norm.cdf(low))
        + spread * (stats.norm.pdf(low) - stats.norm.pdf(high))
    )
    truth = pd.DataFrame(
        {
            "item": np.repeat([f"item{i}" for i in range(n_items)], len(names)),
            "condition": names * n_items,
            "expected": expected.ravel(),
        }
    )
    roles = ["reference" if c == "reference" else "anchor" if c in anchors else "condition" for c in names]
    rows: list[dict[str, object]] = []
    for p in range(n_participants):
        session = {**_session(p, "l0"), "trial_type": trial_type}
        lenient = rng.normal(0, participant_sd)
        view = rng.normal(0, interaction_sd, len(names))
        values = (
            centre
            + np.where(is_ref, 0.0, lenient + view)
            + np.where(
                is_ref, rng.normal(0, reference_sd, centre.shape), rng.normal(0, noise_sd, centre.shape)
            )
        )
        values = np.clip(np.rint(values), 0, 100).astype(int)
        screens = (
            [[(i, c) for c in rng.permutation(len(names))] for i in range(n_items)]
            if trial_type == "mushra"
            else [[(i, c)] for i in range(n_items) for c in range(len(names))]
        )
        for position, k in enumerate(rng.permutation(len(screens))):
            screen = screens[k]
            i = screen[0][0]
            sliders = [
                {"clip": f"i{i}c{c}", "role": roles[c], "condition": names[c], "value": int(values[i, c])}
                for _, c in screen
            ]
            rows.append(
                {
                    **session,
                    "trial_id": f"t{i}" if trial_type == "mushra" else f"t{i}-{names[screen[0][1]]}",
                    "position": position,
                    "item": f"item{i}",
                    "sliders": json.dumps(sliders),
                    "rt_ms": float(rng.lognormal(9.5, 0.4)),
                }
            )
    return SliderStudy(RESPONSES.validate(pd.DataFrame(rows, columns=RESPONSES.column_names)), truth)


def _session(p: int, list_id: str) -> dict[str, object]:
    """Participant ``p``'s columns of a simulated export row: a completed session that
    passed its checks (every other column null)."""
    return {
        **dict.fromkeys(RESPONSES.column_names),
        "schema_version": RESPONSES.version,
        "study_id": "sim",
        "session_id": f"s{p}",
        "participant": f"{p:064x}",
        "list_id": list_id,
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
