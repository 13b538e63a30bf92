"""The per-session trial order: a seeded shuffle under the package's ``OrderRules``.

The builder fixes *which* trials a list holds (that is what keeps lists balanced);
the server fixes their *order* per session from a seed stored with the session, so
order effects average out over participants. Both sides call :func:`session_order`:
the server to serve a session, ``stimuli-builder check`` to prove the rules can be
met for every list.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from artifact_schemas.study import AnswerKey, OrderRules, Phase, StudyManifest

_PHASES: tuple[Phase, ...] = ("screening", "practice", "main")


@dataclass(frozen=True)
class OrderItem:
    """What ordering needs to know about one trial of a list."""

    trial_id: str
    phase: Phase
    group: str | None = None
    attention: bool = False


def session_order(items: Sequence[OrderItem], rules: OrderRules, seed: int) -> list[str]:
    """Trial ids of one session in presentation order.

    Screening trials come first, in an order of their own per session (a random stream
    of the seed apart from the main one): with one order for everyone, the answers were
    2 3 1 2 1 3 for every participant, to be learned once and typed (issue 16.2).
    Practice keeps the package's order. Main trials are shuffled
    with ``random.Random(seed)`` (reproducible: the server can rebuild a
    session's order from its seed alone); attention trials go one into each of equal
    stretches of the session, at a drawn place, never first and never adjacent; with
    ``rules.separate_groups`` no two trials of one group follow each other when possible.
    """
    rng = random.Random(seed)
    screening = [it.trial_id for it in items if it.phase == _PHASES[0]]
    order = [it.trial_id for it in items if it.phase == _PHASES[1]]
    main = [it for it in items if it.phase == "main"]
    regular = [it for it in main if not it.attention]
    attention = [it for it in main if it.attention]
    if not rules.shuffle:
        return screening + order + [it.trial_id for it in main]
    random.Random(f"{seed}|screening").shuffle(screening)
    order = screening + order
    if rules.separate_groups:
        regular = _separate_groups(regular, rng)
    else:
        rng.shuffle(regular)
    rng.shuffle(attention)
    return order + _spread(regular, attention, rng)


def attention_fits(n_regular: int, n_attention: int) -> bool:
    """Whether ``n_attention`` catch trials can be spread (not first, not adjacent)."""
    return n_attention == 0 or n_regular >= n_attention + 1


def groups_separable(groups: Sequence[str | None]) -> bool:
    """Whether trials with these groups can be ordered with no two of a group adjacent."""
    counts: dict[str, int] = {}
    for g in groups:
        if g is not None:
            counts[g] = counts.get(g, 0) + 1
    return not counts or max(counts.values()) <= (len(groups) + 1) // 2


def _separate_groups(items: list[OrderItem], rng: random.Random) -> list[OrderItem]:
    # Randomised greedy: pick uniformly among the trials allowed next, unless one group
    # holds so many of the remaining trials that it must be taken now for the rest to
    # stay separable (the classic "reorganise string" bound: max count <= ceil(n/2)).
    remaining: dict[str | None, list[OrderItem]] = {}
    for it in items:
        remaining.setdefault(it.group, []).append(it)
    for bucket in remaining.values():
        rng.shuffle(bucket)
    out: list[OrderItem] = []
    last: str | None = None
    pick: str | None
    while any(remaining.values()):
        left = sum(len(b) for b in remaining.values())
        grouped = [(len(b), g) for g, b in remaining.items() if g is not None and b]
        biggest_n, biggest = max(grouped, key=lambda x: (x[0], str(x[1]))) if grouped else (0, None)
        if biggest is not None and biggest != last and biggest_n > left // 2:
            pick = biggest
        else:
            allowed = [g for g, b in remaining.items() if b and (g is None or g != last)]
            if not allowed:  # not separable: the rule is best effort (check reports it)
                allowed = [g for g, b in remaining.items() if b]
            weights = [len(remaining[g]) for g in allowed]
            pick = rng.choices(allowed, weights=weights)[0]
        out.append(remaining[pick].pop())
        last = pick
    return out


def _spread(regular: list[OrderItem], attention: list[OrderItem], rng: random.Random) -> list[str]:
    if not attention:
        return [it.trial_id for it in regular]
    gaps = len(attention) + 1
    if len(regular) < gaps:  # cannot honour the spacing; keep catch trials off the first slot
        return [it.trial_id for it in regular[:1] + attention + regular[1:]]
    # The i-th catch trial follows a number of regular trials drawn from the i-th of
    # len(attention) equal stretches of the session (1 .. n), so they are spread out, never
    # first and never adjacent, and where each falls is not predictable. Chunks of equal
    # size put the demo's two checks after the 5th and 10th regular trials in every session
    # (issue 34: an independent attack read which trials were checks from their position).
    n, k = len(regular), len(attention)
    cuts = [rng.randint(i * n // k + 1, (i + 1) * n // k) for i in range(k)]
    out: list[str] = []
    pos = 0
    for cut, catch in zip(cuts, attention, strict=True):
        out += [it.trial_id for it in regular[pos:cut]]
        out.append(catch.trial_id)
        pos = cut
    return out + [it.trial_id for it in regular[pos:]]


def list_items(trial_ids: Sequence[str], manifest: StudyManifest, key: AnswerKey) -> list[OrderItem]:
    """The :class:`OrderItem` of each trial of a list, from the manifest and the key."""
    phases = {t.id: t.phase for t in manifest.trials}
    return [
        OrderItem(t, phases[t], key.trials[t].group, key.trials[t].trial_type == "attention")
        for t in trial_ids
    ]
