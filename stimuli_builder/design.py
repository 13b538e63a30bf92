"""The study design: which trials each of the K lists holds, with counterbalancing.

Balance rules (docs/study-config.md, "How lists are balanced"):

* Per trial type, list k takes ``per_list`` consecutive features from one cyclic
  sequence of the selected features, so every feature appears in
  ``K * per_list / n`` lists, give or take one, and at most once per list.
* The r-th presentation of a feature rotates through its variants (labelers,
  steering conditions), the position of the correct label, and the order of the
  steering candidates, so each is balanced across that feature's presentations:
  with two candidates the steered clip comes first in half of them.
* Trial *order* is not fixed here: the server shuffles each session's list under
  the package's ``OrderRules`` (artifact_schemas.order).

Nothing here touches audio: clips are :class:`ClipSource` descriptions that
:mod:`stimuli_builder.package` renders, so the design can be tested on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from itertools import cycle, islice
from typing import Any, Literal

import numpy as np

from artifact_schemas.order import attention_fits
from artifact_schemas.study import ClipRole, Phase, RatingScale, TrialKind
from stimuli_builder import generated
from stimuli_builder.attention import HALF_SPEED, MAX_SPOKEN_OPTIONS, instruction
from stimuli_builder.bundle import SelectedFeature
from stimuli_builder.config import StudyConfig
from stimuli_builder.foils import FoilPicker

# Candidate orders for three-way steering (S = steered, B = baseline, R = random
# direction). Each half is a Latin square: three presentations taken from one half
# put every candidate in every position once.
_THREE_WAY: list[tuple[str, ...]] = [
    ("S", "B", "R"),
    ("B", "R", "S"),
    ("R", "S", "B"),
    ("S", "R", "B"),
    ("R", "B", "S"),
    ("B", "S", "R"),
]
_TWO_WAY: list[tuple[str, ...]] = [("S", "B"), ("B", "S")]
_LETTERS = "ABC"


@dataclass(frozen=True)
class ClipSource:
    """A clip before rendering: an audio file or a generated signal, and its role."""

    role: ClipRole
    source: str  # file path, or "generated:<name>" (see Design.generated)
    # Comparison clips get one clip id per trial (``use`` = trial key), so a participant
    # cannot spot the shared baseline by seeing the same id in several trials.
    use: str = ""
    feature: str | None = None  # "layer:feature_id"
    normalise: bool = True
    # How the renderer changes the source first (stimuli_builder.attention.transform):
    # "" none, "half_speed", "instruction:<i>" (a spoken "choose answer number i+1").
    transform: str = ""


@dataclass
class TrialSpec:
    key: str  # stable, unique; trial and option ids derive from it
    kind: TrialKind
    phase: Phase
    question: str
    references: list[ClipSource] = field(default_factory=list)
    candidates: list[ClipSource] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    correct_option: int | None = None
    correct_candidate: int | None = None
    rating: RatingScale | None = None
    confidence: RatingScale | None = None
    feedback: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # TrialKey fields


@dataclass
class Design:
    trials: dict[str, TrialSpec]
    lists: list[list[str]]  # trial keys per list
    generated: dict[str, np.ndarray]  # "generated:<name>" -> audio at the study rate
    calibration: ClipSource
    screening_kind: Literal["huggins", "antiphase"] | None
    # What the builder left out and why (also logged): e.g. a label with too few foils.
    warnings: list[str] = field(default_factory=list)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _rotate(options: list[str], correct: str, position: int) -> list[str]:
    others = [o for o in options if o != correct]
    return [*others[:position], correct, *others[position:]]


def build_design(features: list[SelectedFeature], config: StudyConfig, foils: FoilPicker) -> Design:
    """The trials and lists for ``features`` under ``config`` (raises ValueError naming the key)."""
    seed = config.study.seed
    k_lists = config.lists.count
    sr = config.audio.sample_rate
    generated_audio: dict[str, np.ndarray] = {}
    trials: dict[str, TrialSpec] = {}
    lists: list[list[str]] = [[] for _ in range(k_lists)]

    def gen(
        name: str, audio: np.ndarray, role: ClipRole, normalise: bool = True, use: str = ""
    ) -> ClipSource:
        generated_audio[f"generated:{name}"] = audio
        return ClipSource(role, f"generated:{name}", use=use, normalise=normalise)

    shared: list[str] = []
    sc_kind = config.screening.kind
    screening_kind: Literal["huggins", "antiphase"] | None = None if sc_kind == "none" else sc_kind
    if screening_kind is not None:
        for spec in _screening_trials(config, gen):
            trials[spec.key] = spec
            shared.append(spec.key)
    for spec in _practice_trials(config, gen):
        trials[spec.key] = spec
        shared.append(spec.key)
    calibration = gen("calibration", generated.calibration_sound(sr), "calibration")
    for lst in lists:
        lst += shared

    lv, st = config.label_validation, config.steering
    warnings: list[str] = []
    by_type: list[tuple[str, list[SelectedFeature], int | None]] = []
    if lv.enabled:
        labelled = [f for f in features if f.labels]
        for fmt in lv.formats:
            feats, per_list = labelled, lv.per_list
            if fmt == "choice":
                feats = _with_enough_foils(labelled, foils, lv.n_foils, warnings)
                if not feats:
                    raise ValueError(
                        f"label_validation.n_foils: no selected feature has a label with {lv.n_foils} "
                        "foils among the run's other labels; lower n_foils or select more features"
                    )
                if per_list is not None and len(feats) < min(per_list, len(labelled)):
                    warnings.append(
                        f"label_validation.per_list: label choice asks {len(feats)} features per list, "
                        f"not {per_list} (the others have too few foils)"
                    )
                    per_list = len(feats)
            by_type.append((f"label_{fmt}", feats, per_list))
    if st.enabled:
        by_type.append(("steering", [f for f in features if f.steering], st.per_list))

    presentations: dict[tuple[str, str], int] = {}
    # (list, feature) -> the label its choice trial in that list asks for; a rating trial of
    # the same feature in that list rates another of its labels (see _feature_trial).
    chosen_targets: dict[tuple[int, str], str] = {}
    # Choice first, so that rating trials know which labels to keep clear of.
    by_type.sort(key=lambda item: item[0] != "label_choice")
    for kind, feats, per_list in by_type:
        section = "steering" if kind == "steering" else "label_validation"
        if not feats:
            raise ValueError(f"{section}: no selected feature has what {kind} trials need")
        m = per_list if per_list is not None else len(feats)
        if m > len(feats):
            raise ValueError(f"{section}.per_list: at most {len(feats)} (the features available), got {m}")
        # One shuffled cycle of features; list k takes its k-th window of m (at most once per list).
        order = list(feats)
        _rng(seed, "feature-cycle", kind).shuffle(order)
        seq = list(islice(cycle(order), k_lists * m))
        for k in range(k_lists):
            for feat in seq[k * m : (k + 1) * m]:
                r = presentations.get((kind, feat.key), 0)
                presentations[(kind, feat.key)] = r + 1
                offset = order.index(feat)
                avoid = chosen_targets.get((k, feat.key))
                spec = _feature_trial(kind, feat, r, offset, k, config, foils, avoid)
                if kind == "label_choice":
                    chosen_targets[(k, feat.key)] = spec.meta["label"]
                elif kind == "label_rating" and spec.meta["label"] == avoid:
                    warnings.append(
                        f"feature {feat.key}: list {k} rates {avoid!r}, the answer of its label choice "
                        "(the feature has no other label); stimuli-builder check reports it"
                    )
                trials[spec.key] = spec
                lists[k].append(spec.key)

    checks: list[tuple[int, int, str]] = []  # (list, i, kind) of every catch trial
    for k in range(k_lists):
        n_regular = sum(trials[t].phase == "main" for t in lists[k])
        n_att = 0 if config.attention.rate == 0 else max(1, round(config.attention.rate * n_regular))
        if not attention_fits(n_regular, n_att):
            raise ValueError(
                f"attention.rate: {n_att} catch trial(s) cannot be spread among {n_regular} main trials "
                "(never first, never adjacent); lower the rate or add trials"
            )
        kinds = config.attention.kinds
        checks += [(k, i, kinds[(k + i) % len(kinds)]) for i in range(n_att)]
    answers = _attention_answers(checks, seed, _instructed_options(config, foils))
    said: set[str] = set()  # the instructed checks' answers so far
    for k, i, kind_name in checks:
        spec = _attention_trial(kind_name, k, i, answers[(k, i)], features, foils, config, said)
        trials[spec.key] = spec
        lists[k].append(spec.key)
    return Design(trials, lists, generated_audio, calibration, screening_kind, warnings)


def _instructed_options(config: StudyConfig, foils: FoilPicker) -> int:
    """Options of an instructed check: as many as a label choice, as the voice can name."""
    return min(config.label_validation.n_foils + 1, MAX_SPOKEN_OPTIONS, len(_attention_pool(foils)))


def _attention_pool(foils: FoilPicker) -> list[str]:
    return list(foils.pool) or ["piano", "drums", "guitar", "voice"]


def _attention_answers(
    checks: list[tuple[int, int, str]], seed: int, n_instructed: int
) -> dict[tuple[int, int], int]:
    """Per catch trial, its answer: for an identical pair 0 ("same") or 1 ("different"), for
    an instructed check the position the voice names (issue 31.5: they were always "same"
    and always printed in the question). Each kind's answers take every value about equally
    often over the package, in an order drawn from the seed, so no answer is a safe guess."""
    rng = _rng(seed, "attention-answers")
    answers: dict[tuple[int, int], int] = {}
    for kind in sorted({c[2] for c in checks}):
        where = [(k, i) for k, i, kind_ in checks if kind_ == kind]
        m = 2 if kind == "identical_pair" else n_instructed
        start = int(rng.integers(m))
        values = [(start + j) % m for j in range(len(where))]
        rng.shuffle(values)
        answers.update(zip(where, values, strict=True))
    return answers


def _with_enough_foils(
    features: list[SelectedFeature], foils: FoilPicker, n_foils: int, warnings: list[str]
) -> list[SelectedFeature]:
    """The features as label-choice trials may show them: only labels with ``n_foils`` foils.

    A label whose feature's own labels use up the pool (a labeler that gives many features
    the same few words) cannot be asked with ``n_foils`` wrong answers. Failing the whole
    build for it would throw away every other feature, and padding with foils from
    outside the run's labels would offer words nobody checked against this feature's clips.
    So that label is left out of label choice (rating still asks it), and a feature with no
    such label is left out of label choice altogether; ``build_package`` logs each and
    records it in the package's run.json (``warnings``).
    """
    kept = []
    for feat in features:
        usable = [t for t in feat.labels if foils.available(t.label, feat.all_labels) >= n_foils]
        for t in feat.labels:
            if t not in usable:
                n = foils.available(t.label, feat.all_labels)
                warnings.append(
                    f"feature {feat.key}: label {t.label!r} ({t.labeler}) left out of label choice, "
                    f"only {n} foil(s) for label_validation.n_foils = {n_foils}"
                )
        if usable:
            kept.append(replace(feat, labels=usable))
        else:
            warnings.append(f"feature {feat.key}: left out of label choice (no label has enough foils)")
    return kept


def _feature_trial(
    kind: str,
    feat: SelectedFeature,
    r: int,
    offset: int,
    list_index: int,
    config: StudyConfig,
    foils: FoilPicker,
    avoid: str | None = None,
) -> TrialSpec:
    lv, st = config.label_validation, config.steering
    key = f"{kind}|{feat.key}|list{list_index}"
    group = feat.key
    base_meta = {"feature_id": feat.feature_id, "layer": feat.layer, "group": group}
    if kind in ("label_choice", "label_rating"):
        target = feat.labels[(r + offset) % len(feat.labels)]
        if kind == "label_rating" and target.label == avoid and len(feat.labels) > 1:
            # Rating the label that is the right answer of this list's choice trial, with the
            # same clips, would give that choice away (issue 16.3): rate the next label.
            target = feat.labels[(r + offset + 1) % len(feat.labels)]
        refs = [
            ClipSource("example", str(p), feature=feat.key) for p in feat.examples[: lv.examples_per_trial]
        ]
        meta = {
            **base_meta,
            "labeler": target.labeler,
            "label": target.label,
            "clap_score": target.clap_score,
        }
        meta["trial_type"] = kind
        if kind == "label_rating":
            scale = RatingScale(
                min=1, max=lv.rating_scale, min_label=lv.rating_min_label, max_label=lv.rating_max_label
            )
            question = lv.question_rating.replace("{label}", target.label)
            return TrialSpec(key, "label_rating", "main", question, refs, rating=scale, meta=meta)
        chosen = foils.pick(target.label, feat.all_labels, lv.n_foils, f"{config.study.seed}|{key}")
        position = (r + offset) % (lv.n_foils + 1)
        options = _rotate([target.label, *sorted(chosen)], target.label, position)
        return TrialSpec(
            key,
            "label_choice",
            "main",
            lv.question_choice,
            refs,
            options=options,
            correct_option=position,
            meta=meta,
        )
    cond = feat.steering[(r + offset) % len(feat.steering)]
    if st.mode == "three_way":
        # Presentations 3b..3b+2 use block b's Latin square (the mirror squares alternate).
        order = _THREE_WAY[(r // 3) % 2 * 3 + (r + offset) % 3]
    else:
        order = _TWO_WAY[(r + offset) % 2]
    clip_of = {
        "S": ClipSource("steered", str(cond.steered), use=key, feature=feat.key),
        "B": ClipSource("baseline", str(cond.baseline), use=key, feature=feat.key),
        "R": ClipSource("random_direction", str(cond.random), use=key, feature=feat.key),
    }
    refs = [ClipSource("example", str(p), feature=feat.key) for p in feat.examples[: st.references]]
    confidence = (
        RatingScale(min=1, max=5, min_label="Guessing", max_label="Certain") if st.confidence else None
    )
    meta = {
        **base_meta,
        "strength": cond.strength,
        "prompt": cond.prompt,
        "seed": cond.seed,
        "trial_type": "steering",
    }
    return TrialSpec(
        key,
        "comparison",
        "main",
        st.question,
        refs,
        candidates=[clip_of[c] for c in order],
        options=[f"Clip {_LETTERS[i]}" for i in range(len(order))],
        correct_option=order.index("S"),
        correct_candidate=order.index("S"),
        confidence=confidence,
        meta=meta,
    )


def _attention_trial(
    kind: str,
    list_index: int,
    i: int,
    answer: int,
    features: list[SelectedFeature],
    foils: FoilPicker,
    config: StudyConfig,
    said: set[str],
) -> TrialSpec:
    """A catch trial whose ``answer`` only the audio tells (stimuli_builder.attention).

    ``said`` holds the labels earlier instructed checks had for answer; this one's answer is
    another where its options allow, so that no one label is the answer of every check."""
    key = f"attention|{kind}|list{list_index}|{i}"
    rng = _rng(config.study.seed, key)
    feat = features[int(rng.integers(len(features)))]
    clip = str(feat.examples[0])
    meta = {"check": kind, "trial_type": "attention"}
    if kind == "identical_pair":
        # One clip twice under two ids ("same"), or beside itself at half speed ("different").
        # The altered one is A or B at random; the pair is cut, dithered and padded as any.
        same = ClipSource("attention", clip, use=f"{key}|a")
        other = ClipSource("attention", clip, use=f"{key}|b", transform=HALF_SPEED if answer else "")
        pair = [same, other] if rng.random() < 0.5 else [other, same]
        return TrialSpec(
            key,
            "comparison",
            "main",
            "Do clip A and clip B sound the same?",
            candidates=pair,
            options=["They sound the same", "They sound different"],
            correct_option=answer,
            meta=meta,
        )
    # Looks like a label choice of the study (its question, its number of examples and of
    # options); one example says aloud which answer to choose. The options are labels not
    # of this feature where the run has enough, so the music points at none of them.
    pool = _attention_pool(foils)
    n_options = _instructed_options(config, foils)
    unrelated = [x for x in pool if x not in feat.all_labels]
    pool = unrelated if len(unrelated) >= n_options else pool
    options = [str(x) for x in rng.choice(pool, size=n_options, replace=False)]
    fresh = [j for j, x in enumerate(options) if x not in said]
    if fresh and options[answer] in said:
        options[answer], options[fresh[0]] = options[fresh[0]], options[answer]
    said.add(options[answer])
    examples = [str(p) for p in feat.examples[: config.label_validation.examples_per_trial]]
    spoken = int(rng.integers(len(examples)))
    refs = [
        ClipSource("attention", p, use=key, transform=instruction(answer))
        if j == spoken
        else ClipSource("example", p, feature=feat.key)
        for j, p in enumerate(examples)
    ]
    return TrialSpec(
        key,
        "label_choice",
        "main",
        config.label_validation.question_choice,
        references=refs,
        options=options,
        correct_option=answer,
        meta=meta,
    )


def _screening_trials(config: StudyConfig, gen: Any) -> list[TrialSpec]:
    sc = config.screening
    sr = config.audio.sample_rate
    rng = _rng(config.study.seed, "screening")
    targets = [i % 3 for i in range(sc.trials)]
    rng.shuffle(targets)
    question = {
        "huggins": "Which of the three noises contained a faint tone? Listen through headphones.",
        "antiphase": "Which of the three tones was the quietest? Listen through headphones.",
    }[sc.kind]
    specs = []
    for i, target in enumerate(targets):
        if sc.kind == "huggins":
            audio = generated.huggins_trial(target, rng, sr)
        else:
            antiphase = int(rng.choice([j for j in range(3) if j != target]))
            audio = generated.antiphase_trial(target, antiphase, sr)
        clip = gen(f"screening{i}", audio, "screening", normalise=False)
        specs.append(
            TrialSpec(
                f"screening|{i}",
                "screening",
                "screening",
                question,
                references=[clip],
                options=["The first sound", "The second sound", "The third sound"],
                correct_option=target,
                meta={"check": sc.kind, "trial_type": "screening"},
            )
        )
    return specs


def _practice_trials(config: StudyConfig, gen: Any) -> list[TrialSpec]:
    sr = config.audio.sample_rate
    names = {"high": "High-pitched melody", "low": "Low-pitched melody", "drums": "Drum beat"}
    specs = []
    for i in range(config.practice.trials):
        rng = _rng(config.study.seed, "practice", i)
        kinds = ["high", "low", "drums"]
        target = kinds[i % 3]

        def clip(kind: str, j: int, i: int = i, rng: np.random.Generator = rng) -> ClipSource:
            audio = (
                generated.drum_pattern(rng, sr) if kind == "drums" else generated.tone_melody(kind, rng, sr)
            )
            return gen(f"practice{i}_{kind}{j}", audio, "example")

        refs = [clip(target, 0), clip(target, 1)]
        if i % 2 == 0:
            position = int(rng.integers(3))
            options = _rotate([names[k] for k in kinds], names[target], position)
            specs.append(
                TrialSpec(
                    f"practice|{i}",
                    "label_choice",
                    "practice",
                    config.label_validation.question_choice,
                    refs,
                    options=options,
                    correct_option=position,
                    feedback=True,
                    meta={"trial_type": "practice"},
                )
            )
        else:
            other = kinds[(i + 1) % 3]
            first = int(rng.integers(2))
            cands = [clip(target, 2), clip(other, 3)]
            if first == 1:
                cands.reverse()
            specs.append(
                TrialSpec(
                    f"practice|{i}",
                    "comparison",
                    "practice",
                    config.steering.question,
                    refs,
                    candidates=cands,
                    options=["Clip A", "Clip B"],
                    correct_option=first,
                    correct_candidate=first,
                    feedback=True,
                    meta={"trial_type": "practice"},
                )
            )
    return specs
