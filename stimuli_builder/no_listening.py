"""What a participant scores without listening: strategies that read only the public files.

Each strategy decides every answer from what a browser can fetch (``study.json`` and the
audio files: option texts, positions, questions, clip bytes, sizes and durations), and is
scored against ``key.json``: its expected accuracy is the mean, over every (list, trial)
a participant would answer, of the chance its choice is right (ties are broken at
random). A strategy above chance + ``LEAK_MARGIN`` on a trial type, by more than luck
could give on its number of trials (binomial p < ``LEAK_P``), is a leak (issue 34.2:
always choosing "energetic" when offered scored 0.625 against chance 0.25 and the check
said "blinding leaks: 0"). One participant sees one list, so counts are per list.

One strategy is listening-assisted: "position by elimination" knows the answers of the
list's other trials of the type (a participant who heard them) and takes the position
they used least; a fixed cycle of positions per list handed it the last trial.

A MUSHRA trial has no right answer, but it has a clip to find: the hidden reference,
which BS.1534 screens assessors by. The strategies look for it among the candidates
(position, size, duration, recurring audio, and the file or samples of the open
reference); elimination is left out for it, since a listener finds the hidden reference
by ear in the trial itself.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy.stats import binom

from artifact_schemas import AnswerKey, StudyManifest
from artifact_schemas.study import Trial
from stimuli_builder.trial_types import own_type

# Above chance by more than this (10 points), and unlikely by luck (binomial p < LEAK_P),
# is a leak.
LEAK_MARGIN = 0.10
LEAK_P = 0.05
# Decoded samples within this many 16-bit steps of another clip's are "the same audio":
# fresh 1-step dither per trial kept a shared baseline within 2 steps (issue 34.5).
SAME_SAMPLES_STEPS = 4


class StrategyResult(NamedTuple):
    """One no-listening strategy on one trial type."""

    trial_type: str
    """label_choice, steering, attention:instructed, attention:identical_pair, mushra."""
    strategy: str
    """What the strategy does, in words."""
    trials: int
    """(list, trial) pairs it answered."""
    accuracy: float
    """Its expected accuracy."""
    chance: float
    """Mean of 1 / options over the same trials."""

    @property
    def threshold(self) -> float:
        """Chance + ``LEAK_MARGIN``, or what the best-balanced answers of this few trials
        give a fixed guess if more (of 2 four-option checks, one position is right in 1/2)."""
        return max(self.chance + LEAK_MARGIN, math.ceil(self.trials * self.chance - 1e-9) / self.trials)

    @property
    def p_value(self) -> float:
        """One-sided binomial p of scoring this well (or better) by guessing at chance."""

        right = math.ceil(self.accuracy * self.trials - 1e-9)
        return float(binom.sf(right - 1, self.trials, self.chance))

    @property
    def leak(self) -> bool:
        """Above the threshold, and more than luck could give on this few trials (binomial
        p < ``LEAK_P``): of 4 four-option checks, 3 right by guessing has p = 0.051, and
        the demo's instructed checks tripped the bare threshold by which labels its SAEs gave."""
        return self.accuracy > self.threshold + 1e-9 and self.p_value < LEAK_P


@dataclass
class _Seen:
    """One trial as a participant of one list meets it."""

    trial: Trial
    trial_type: str
    correct: int  # index of the correct option (mushra: of the hidden reference's candidate)
    list_id: str
    n: int  # options to choose from (mushra: candidates)
    # The answer is one of the trial's candidate clips: a steering trial's options are its
    # candidates, in order, and a type of your own clips without options may hide its answer
    # among them (MUSHRA's hidden reference, own_type(...).hidden_answer).
    among_candidates: bool = False


# A strategy: the chance of each option being chosen, from public information.
_Choose = Callable[[_Seen], Sequence[float] | None]


def no_listening_strategies(root: Path, manifest: StudyManifest, key: AnswerKey) -> list[StrategyResult]:
    """Every strategy on every trial type it applies to (see the module docstring)."""
    by_id = {t.id: t for t in manifest.trials}
    seen: list[_Seen] = []
    for lst in manifest.lists:
        for tid in lst.trials:
            t, k = by_id[tid], key.trials[tid]
            if t.phase != "main":
                continue
            own = own_type(k.trial_type)
            if own is not None and not t.options:
                hidden = own.hidden_answer(t, key)
                if hidden is not None:
                    seen.append(_Seen(t, own.NAME, hidden, lst.id, len(t.candidates), among_candidates=True))
                continue
            ids = [o.id for o in t.options]
            if k.correct_option is None or k.correct_option not in ids:
                continue
            ttype: str = k.trial_type or t.kind
            if ttype == "attention":
                ttype = f"attention:{k.check or 'attention'}"
            seen.append(_Seen(t, ttype, ids.index(k.correct_option), lst.id, len(ids), ttype == "steering"))
    audio = _Audio(root, manifest)
    strategies = _strategies(seen, manifest, audio)
    results = []
    for ttype in sorted({s.trial_type for s in seen}):
        mine = [s for s in seen if s.trial_type == ttype]
        chance = float(np.mean([1 / s.n for s in mine]))
        for name, choose in strategies:
            scores = []
            for s in mine:
                p = choose(s)
                if p is not None:
                    scores.append(p[s.correct])
            if scores and len(scores) == len(mine):
                results.append(StrategyResult(ttype, name, len(scores), float(np.mean(scores)), chance))
    return results


def _uniform(n: int, chosen: Sequence[int]) -> list[float]:
    chosen = list(chosen) or list(range(n))
    return [1 / len(chosen) if i in chosen else 0.0 for i in range(n)]


def out_of_order_choice(texts: Sequence[str]) -> list[float]:
    """The chance of choosing each option by "the option without which the others are in
    alphabetical order" (also scored on a design, before it is written: build.py)."""
    low = [t.casefold() for t in texts]
    hit = [i for i in range(len(low)) if (rest := low[:i] + low[i + 1 :]) == sorted(rest)]
    return _uniform(len(low), hit)


def _always(j: int) -> _Choose:
    def choose(s: _Seen) -> list[float] | None:
        return _uniform(s.n, [j]) if j < s.n else None

    return choose


def _strategies(seen: list[_Seen], manifest: StudyManifest, audio: _Audio) -> list[tuple[str, _Choose]]:
    out: list[tuple[str, _Choose]] = []
    n_max = max((s.n for s in seen), default=0)
    for j in range(n_max):
        out.append((f"always option {j + 1}", _always(j)))

    # Option texts per list, over the trials that look like label choices (options that
    # are not "Clip A"...); and the labels the list asks to rate (the question names them).
    offered: dict[str, Counter[str]] = defaultdict(Counter)
    # The manifest holds every list: an option's frequency over the whole study, too.
    in_study: Counter[str] = Counter(
        o.text.casefold()
        for t in manifest.trials
        if t.phase == "main" and t.kind == "label_choice"
        for o in t.options
    )
    rated: dict[str, list[str]] = defaultdict(list)
    by_id = {t.id: t for t in manifest.trials}
    for lst in manifest.lists:
        for tid in lst.trials:
            t = by_id[tid]
            if t.phase != "main":
                continue
            if t.kind == "label_choice":
                offered[lst.id].update(o.text.casefold() for o in t.options)
            if t.kind == "label_rating":
                rated[lst.id].append(t.question.casefold())

    def by_count(most: bool, study: bool = False) -> _Choose:
        def choose(s: _Seen) -> list[float] | None:
            if s.trial.kind != "label_choice":
                return None
            counter = in_study if study else offered[s.list_id]
            counts = [counter[o.text.casefold()] for o in s.trial.options]
            best = max(counts) if most else min(counts)
            return _uniform(len(counts), [i for i, c in enumerate(counts) if c == best])

        return choose

    def by_rated(pick: bool) -> _Choose:
        def choose(s: _Seen) -> list[float] | None:
            if s.trial.kind != "label_choice":
                return None
            hit = [i for i, o in enumerate(s.trial.options) if _named_in(o.text, rated[s.list_id])]
            if not pick:
                hit = [i for i in range(len(s.trial.options)) if i not in hit]
            return _uniform(len(s.trial.options), hit)

        return choose

    # Colluders pooling their lists (or anyone holding study.json) see every list's rating
    # trials: one whose example clips are a choice trial's (same id, bytes or samples) names
    # a label of the same feature (issue 34: 0.53-0.59 while lists shared example ids).
    rating_trials = [t for t in manifest.trials if t.phase == "main" and t.kind == "label_rating"]

    def rated_with_same_clips(s: _Seen) -> list[float] | None:
        if s.trial.kind != "label_choice":
            return None
        questions = [
            r.question.casefold()
            for r in rating_trials
            if any(audio.same(a, b) for a in s.trial.references for b in r.references)
        ]
        return _uniform(
            len(s.trial.options), [i for i, o in enumerate(s.trial.options) if _named_in(o.text, questions)]
        )

    def out_of_order(s: _Seen) -> list[float] | None:
        # Foils in sorted order with the answer put in among them: the answer is the option
        # without which the rest is sorted (0.57 against chance 0.25, issue 34).
        if s.trial.kind != "label_choice":
            return None
        return out_of_order_choice([o.text for o in s.trial.options])

    out += [
        ("the option without which the others are in alphabetical order", out_of_order),
        ("the option the list offers most often", by_count(True)),
        ("the option the list offers least often", by_count(False)),
        ("the option the study offers most often", by_count(True, study=True)),
        ("the option the study offers least often", by_count(False, study=True)),
        ("an option the list asks to rate elsewhere", by_rated(True)),
        ("an option the list does not ask to rate", by_rated(False)),
        ("an option rated with the same example clips in any list", rated_with_same_clips),
    ]

    # Candidate clips: a steering trial's options are its candidates, in order; a MUSHRA
    # trial's hidden reference is one of its candidates.
    def by_clip(measure: Callable[[str], float], most: bool) -> _Choose:
        def choose(s: _Seen) -> list[float] | None:
            t = s.trial
            if not s.among_candidates or len(t.candidates) != s.n:
                return None
            values = [measure(c) for c in t.candidates]
            best = max(values) if most else min(values)
            return _uniform(len(values), [i for i, v in enumerate(values) if v == best])

        return choose

    out += [
        ("the largest candidate file", by_clip(audio.size, True)),
        ("the smallest candidate file", by_clip(audio.size, False)),
        # Files padded to one size still say how much audio data each holds (issue 34).
        ("the candidate with the most audio data (size less padding)", by_clip(audio.payload, True)),
        ("the candidate with the least audio data (size less padding)", by_clip(audio.payload, False)),
        ("the longest candidate", by_clip(lambda c: manifest.clips[c].duration_s, True)),
        ("the shortest candidate", by_clip(lambda c: manifest.clips[c].duration_s, False)),
    ]

    # Candidates whose bytes or decoded samples recur in another trial of the list.
    in_list: dict[str, list[Trial]] = defaultdict(list)
    for s in seen:
        in_list[s.list_id].append(s.trial)

    def repeats(s: _Seen) -> list[int]:
        others = [c for t in in_list[s.list_id] if t.id != s.trial.id for c in t.candidates]
        return [i for i, c in enumerate(s.trial.candidates) if any(audio.same(c, o) for o in others)]

    def by_repeat(pick: bool) -> _Choose:
        def choose(s: _Seen) -> list[float] | None:
            t = s.trial
            if not s.among_candidates or len(t.candidates) != s.n:
                return None
            hit = repeats(s)
            if not pick:
                hit = [i for i in range(len(t.candidates)) if i not in hit]
            return _uniform(len(t.candidates), hit)

        return choose

    def same_pair(s: _Seen) -> list[float] | None:
        # "Do A and B sound the same?": the same samples say "same" (option 1).
        t = s.trial
        if s.trial_type != "attention:identical_pair" or len(t.candidates) != 2 or len(t.options) != 2:
            return None
        return [1.0, 0.0] if audio.same(*t.candidates) else [0.0, 1.0]

    def like_reference(match: Callable[[str, str], bool]) -> _Choose:
        # The hidden reference is the open reference again: a copy of its file, or of its
        # size, or of its samples, would give it away.
        def choose(s: _Seen) -> list[float] | None:
            t = s.trial
            if own_type(s.trial_type) is None or len(t.references) != 1:
                return None
            return _uniform(s.n, [i for i, c in enumerate(t.candidates) if match(t.references[0], c)])

        return choose

    out += [
        ("a candidate whose audio recurs in the list", by_repeat(True)),
        ("a candidate whose audio does not recur in the list", by_repeat(False)),
        ("same samples in both clips means 'same'", same_pair),
        (
            "the candidate with the open reference's file size",
            like_reference(lambda r, c: audio.size(r) == audio.size(c)),
        ),
        ("the candidate with the open reference's bytes or samples", like_reference(audio.same)),
    ]

    # Listening-assisted: the answers of the list's other trials of the type are known.
    answers: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for s in seen:
        answers[(s.list_id, s.trial_type)].append((s.trial.id, s.correct))

    def elimination(s: _Seen) -> list[float] | None:
        if s.trial_type not in ("label_choice", "steering"):
            return None
        n = len(s.trial.options)
        used = Counter(c for tid, c in answers[(s.list_id, s.trial_type)] if tid != s.trial.id)
        least = min(used.get(i, 0) for i in range(n))
        return _uniform(n, [i for i in range(n) if used.get(i, 0) == least])

    out.append(("position by elimination (the list's other answers known)", elimination))
    return out


def _named_in(label: str, questions: list[str]) -> bool:
    """Whether a rating question names ``label`` (as a whole phrase)."""
    pattern = re.compile(rf"(?<!\w){re.escape(label.casefold())}(?!\w)")
    return any(pattern.search(q) for q in questions)


class _Audio:
    """Clip sizes, audio data less padding and decoded samples, read once."""

    def __init__(self, root: Path, manifest: StudyManifest) -> None:
        self.root = root
        self.manifest = manifest
        self._samples: dict[str, np.ndarray] = {}
        self._payload: dict[str, float] = {}

    def size(self, clip_id: str) -> float:
        path = self.root / self.manifest.clips[clip_id].file
        return float(path.stat().st_size) if path.is_file() else 0.0

    def payload(self, clip_id: str) -> float:
        # read once: the "most" and "least audio data" strategies both ask for every candidate
        if clip_id not in self._payload:
            path = self.root / self.manifest.clips[clip_id].file
            self._payload[clip_id] = float(audio_bytes(path.read_bytes())) if path.is_file() else 0.0
        return self._payload[clip_id]

    def samples(self, clip_id: str) -> np.ndarray:
        if clip_id not in self._samples:
            path = self.root / self.manifest.clips[clip_id].file
            try:
                data, _ = sf.read(io.BytesIO(path.read_bytes()), dtype="int16", always_2d=True)
            except (OSError, sf.LibsndfileError):
                data = np.zeros((0, 1), dtype=np.int16)
            self._samples[clip_id] = data.astype(np.int32)
        return self._samples[clip_id]

    def same(self, a: str, b: str) -> bool:
        """Whether two clips hold the same bytes or the same samples (up to dither)."""
        if a == b or self.manifest.clips[a].sha256 == self.manifest.clips[b].sha256:
            return True
        x, y = self.samples(a), self.samples(b)
        if x.shape != y.shape or x.size == 0:
            return False
        # A stretch from the middle (not the faded-in start) settles most pairs: the
        # study-wide strategy compares thousands.
        mid = slice(x.shape[0] // 2, x.shape[0] // 2 + 512)
        if np.abs(x[mid] - y[mid]).max() > SAME_SAMPLES_STEPS:
            return False
        return bool(np.abs(x - y).max() <= SAME_SAMPLES_STEPS)


def audio_bytes(data: bytes) -> int:
    """The bytes of an audio file less its padding: FLAC PADDING metadata blocks, WAV JUNK
    and PAD chunks, a leading MP3 ID3v2 tag. What a file padded to a common size still
    tells about how well its audio compressed: in the demo's FLAC steering trials the
    steered clip was the one with the most (12 of 12, issue 34)."""
    padding = 0
    if data[:4] == b"fLaC":
        pos, last = 4, False
        while not last and pos + 4 <= len(data):
            last, kind = bool(data[pos] & 0x80), data[pos] & 0x7F
            length = int.from_bytes(data[pos + 1 : pos + 4], "big")
            padding += 4 + length if kind == 1 else 0
            pos += 4 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(data):
            chunk, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
            padding += 8 + length + length % 2 if chunk.strip().upper() in (b"JUNK", b"PAD") else 0
            pos += 8 + length + length % 2
    elif data[:3] == b"ID3" and len(data) >= 10:
        padding = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    return len(data) - padding
