"""Foil labels for label-choice trials: wrong answers drawn from other features' labels.

A foil is never the target (up to case, punctuation, word order and plural -s),
never a configured synonym of it, and never any label of the target's own feature
(from any labeler), so a participant who heard the concept can always tell.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

import numpy as np

# Labels whose CLAP text embeddings are this close are treated as synonyms in the
# "hard" strategy: nearest neighbours make good foils only while they mean something else.
NEAR_DUPLICATE_COSINE = 0.97


def normalise(label: str) -> str:
    """A label's comparison form: lower case, words sorted, plural -s dropped."""
    words = re.findall(r"[a-z0-9]+", label.casefold())
    return " ".join(
        sorted(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words)
    )


class FoilPicker:
    """Draws foils from a pool of labels; reproducible for a given draw key."""

    def __init__(
        self,
        pool: Iterable[str],
        synonyms: Sequence[Sequence[str]] = (),
        strategy: str = "random",
        clap_model: str | None = None,
    ) -> None:
        by_norm: dict[str, str] = {}
        for label in sorted(set(pool)):
            by_norm.setdefault(normalise(label), label)
        self.pool = sorted(by_norm.values())
        self._synonyms = [{normalise(w) for w in group} for group in synonyms]
        self.strategy = strategy
        self._embeddings: dict[str, np.ndarray] = {}
        self._clap_model = clap_model

    def _excluded(self, target: str, own: Iterable[str]) -> set[str]:
        t = normalise(target)
        out = {t} | {normalise(x) for x in own}
        for group in self._synonyms:
            if t in group:
                out |= group
        return out

    def candidates(self, target: str, own: Iterable[str]) -> list[str]:
        """Labels allowed as foils for ``target`` of a feature whose labels are ``own``."""
        banned = self._excluded(target, own)
        return [x for x in self.pool if normalise(x) not in banned]

    def available(self, target: str, own: Iterable[str]) -> int:
        """How many foils :meth:`pick` can draw for ``target`` (under this strategy)."""
        allowed = self.candidates(target, own)
        return len(self._nearest(target, allowed) if self.strategy == "hard" else allowed)

    def pick(self, target: str, own: Iterable[str], n: int, draw_key: str) -> list[str]:
        """``n`` foils for ``target``; the same ``draw_key`` gives the same foils."""
        allowed = self.candidates(target, own)
        if self.strategy == "hard":
            allowed = self._nearest(target, allowed)
        if len(allowed) < n:
            raise ValueError(
                f"label_validation.n_foils: only {len(allowed)} labels can serve as foils "
                f"for {target!r}, {n} needed"
            )
        if self.strategy == "hard":
            return allowed[:n]
        # random.Random(str) hashes the string with SHA-512: stable across runs and
        # processes (unlike hash()), so foil sets are reproducible from the seed.
        return random.Random(draw_key).sample(allowed, n)

    def _embed(self, texts: Sequence[str]) -> None:
        todo = [t for t in texts if t not in self._embeddings]
        if not todo:
            return
        from sae_core.clap import ClapScorer  # torch: only when the hard strategy is used

        assert self._clap_model is not None
        vecs = ClapScorer.load(self._clap_model).embed_text(todo)
        vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self._embeddings.update(zip(todo, vecs, strict=True))

    def _nearest(self, target: str, allowed: list[str]) -> list[str]:
        self._embed([target, *self.pool])
        t = self._embeddings[target]
        sims = [(float(self._embeddings[x] @ t), x) for x in allowed]
        return [x for s, x in sorted(sims, key=lambda p: (-p[0], p[1])) if s < NEAR_DUPLICATE_COSINE]
