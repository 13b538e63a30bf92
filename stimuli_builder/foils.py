"""Foil labels for label-choice trials: wrong answers drawn from other features' labels.

A foil is never the target (up to case, punctuation, word order and plural -s),
never a configured synonym of it, and never any label of the target's own feature
(from any labeler), so a participant who heard the concept can always tell.

Within a list, :meth:`FoilPicker.assign` also balances base rates (issue 34.1): a label
that is the answer of t choice trials is offered as a foil in ``n_foils * t`` others, so
every offered label is right in 1 of ``n_foils + 1`` of its appearances, as chance is.
Drawn one trial at a time, foils excluded every label of the target's feature, so a label
many features share ("energetic") was almost never a foil: it was offered in 12 of 24
demo choice trials and right in all 12.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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


@dataclass
class FoilAssignment:
    """The foils of one list's label-choice trials and where base rates stay unbalanced."""

    foils: list[list[str]]
    """Per trial (in the order given), its foils."""
    imbalance: list[str] = field(default_factory=list)
    """One line per label offered more or less often than its answers call for."""


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

    def can_foil(self, label: str, target: str, own: Iterable[str]) -> bool:
        """Whether ``label`` may be a foil for ``target`` of a feature whose labels are ``own``."""
        return normalise(label) not in self._excluded(target, own)

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

    def assign(self, trials: Sequence[tuple[str, Iterable[str]]], n: int, draw_key: str) -> FoilAssignment:
        """``n`` foils for each ``(target, own labels)`` of one list, base rates balanced.

        The foils are a maximum flow (trials -> allowed labels -> labels, the label's
        capacity ``n`` times the trials it answers in this list), so as many foil slots as
        the pool allows go to labels that are answers elsewhere in the list; the rest are
        filled with other allowed labels, the least offered first, and reported in
        ``imbalance``. Reproducible for a given ``draw_key``. The "hard" strategy keeps its
        nearest-neighbour foils (it chooses foils by meaning, not by base rate).
        """
        trials = [(t, list(own)) for t, own in trials]
        if self.strategy == "hard":
            return FoilAssignment(
                [self.pick(t, own, n, f"{draw_key}|{i}") for i, (t, own) in enumerate(trials)]
            )
        rng = random.Random(draw_key)
        allowed = [self.candidates(t, own) for t, own in trials]
        for (target, _), cands in zip(trials, allowed, strict=True):
            if len(cands) < n:
                raise ValueError(
                    f"label_validation.n_foils: only {len(cands)} labels can serve as foils "
                    f"for {target!r}, {n} needed"
                )
        answers = Counter(normalise(t) for t, _ in trials)
        capacity = {x: n * answers[normalise(x)] for x in self.pool if answers[normalise(x)]}
        chosen = _max_flow(allowed, capacity, n, rng)
        offered: Counter[str] = Counter(x for foils in chosen for x in foils)
        for i in rng.sample(range(len(trials)), len(trials)):
            spare = [x for x in allowed[i] if x not in chosen[i]]
            rng.shuffle(spare)
            spare.sort(key=lambda x: offered[x])
            for x in spare[: n - len(chosen[i])]:
                chosen[i].append(x)
                offered[x] += 1
        imbalance = []
        for label in sorted(set(capacity) | set(offered)):
            want = capacity.get(label, 0)
            if offered[label] != want:
                imbalance.append(
                    f"{label!r} is the answer {answers[normalise(label)]} time(s) and a foil "
                    f"{offered[label]} time(s) ({want} would match chance)"
                )
        return FoilAssignment([sorted(c) for c in chosen], imbalance)

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


def _max_flow(
    allowed: list[list[str]], capacity: dict[str, int], n: int, rng: random.Random
) -> list[list[str]]:
    """Foils per trial: at most ``n`` each, label x at most ``capacity[x]`` times over all.

    Augmenting paths (Ford-Fulkerson) on trials -> labels; the graphs are a list's few
    dozen trials and labels, so the simple algorithm is instant.
    """
    chosen: list[list[str]] = [[] for _ in allowed]
    used: Counter[str] = Counter()
    edges = [[x for x in a if x in capacity] for a in allowed]
    for e in edges:
        rng.shuffle(e)

    def augment(start: int) -> bool:
        # BFS over trials; a trial reaches label x (not yet its foil) and through x any
        # trial that holds x and could give it up for another label.
        parent: dict[int, tuple[int, str] | None] = {start: None}
        queue = [start]
        while queue:
            i = queue.pop(0)
            for x in edges[i]:
                if x in chosen[i]:
                    continue
                if used[x] < capacity[x]:
                    # Free capacity: move labels back along the path.
                    node, label = i, x
                    while True:
                        chosen[node].append(label)
                        step = parent[node]
                        if step is None:
                            break
                        prev, moved = step
                        chosen[node].remove(moved)
                        node, label = prev, moved
                    used[x] += 1
                    return True
                for j, held in enumerate(chosen):
                    if j not in parent and x in held:
                        parent[j] = (i, x)
                        queue.append(j)
        return False

    for _ in range(n):
        for i in rng.sample(range(len(allowed)), len(allowed)):
            if len(chosen[i]) < n:
                augment(i)
    return chosen
