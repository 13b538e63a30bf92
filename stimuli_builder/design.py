"""The study design: which trials each of the K lists holds, with counterbalancing.

Balance rules (docs/study-config.md, "How lists are balanced"):

* Per trial type, list k takes ``per_list`` consecutive features from one cyclic
  sequence of the selected features, so every feature appears in
  ``K * per_list / n`` lists, give or take one, and at most once per list.
* The r-th presentation of a feature rotates through its variants (labelers,
  steering conditions), preferring within a list an answer and a baseline no other
  trial of the list has.
* Answer positions (the correct label, the steered clip) are balanced per feature
  and over the study, and drawn independently per trial, not cycled per list
  (``balanced_positions``, issue 34.5).
* Foils balance base rates within a list (``FoilPicker.assign``); labels whose base
  rate cannot be balanced sit out of label choice (``_balanceable``, issue 34.1).
* Trial *order* is not fixed here: the server shuffles each session's list under
  the package's ``OrderRules`` (artifact_schemas.order).

Nothing here touches audio: clips are :class:`ClipSource` descriptions that
:mod:`stimuli_builder.package` renders, so the design can be tested on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import replace
from itertools import cycle, islice
from typing import Any, Literal

import numpy as np

from artifact_schemas.order import attention_fits
from artifact_schemas.study import N_, ClipRole, RatingScale
from stimuli_builder import generated
from stimuli_builder.attention import HALF_SPEED, MAX_SPOKEN_OPTIONS, instruction
from stimuli_builder.bundle import SelectedFeature, TargetLabel
from stimuli_builder.config import StudyConfig
from stimuli_builder.foils import FoilPicker, normalise
from stimuli_builder.i18n import translator
from stimuli_builder.layout import ClipSource, Design, TrialSpec, balanced_positions, seeded_rng

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
# The options of a comparison, named as the page names its clips.
_CLIP_NAMES = [N_("Clip A"), N_("Clip B"), N_("Clip C")]


def _rotate(options: list[str], correct: str, position: int) -> list[str]:
    others = [o for o in options if o != correct]
    return [*others[:position], correct, *others[position:]]


def start_design(config: StudyConfig) -> Design:
    """A design whose lists hold what every list begins with (the headphone check and the
    practice trials), with the calibration sound; the study's own trials are added to it."""
    sr = config.audio.sample_rate
    generated_audio: dict[str, np.ndarray] = {}
    trials: dict[str, TrialSpec] = {}

    def gen(
        name: str, audio: np.ndarray, role: ClipRole, normalise: bool = True, use: str = ""
    ) -> ClipSource:
        generated_audio[f"generated:{name}"] = audio
        return ClipSource(role, f"generated:{name}", use=use, normalise=normalise)

    shared: list[str] = []
    sc_kind = config.screening.kind
    screening_kind: Literal["huggins", "antiphase"] | None = None if sc_kind == "none" else sc_kind
    screening_example = None
    if screening_kind is not None:
        for spec in _screening_trials(config, gen):
            trials[spec.key] = spec
            shared.append(spec.key)
        screening_example = _screening_example(config, gen)
    for spec in _practice_trials(config, gen):
        trials[spec.key] = spec
        shared.append(spec.key)
    calibration = gen("calibration", generated.calibration_sound(sr), "calibration")
    lists = [list(shared) for _ in range(config.lists.count)]
    return Design(trials, lists, generated_audio, calibration, screening_kind, [], screening_example)


def build_design(features: list[SelectedFeature], config: StudyConfig, foils: FoilPicker) -> Design:
    """The trials and lists for ``features`` under ``config`` (raises ValueError naming the key)."""
    seed = config.study.design_seed
    k_lists = config.lists.count
    design = start_design(config)
    trials, lists, warnings = design.trials, design.lists, design.warnings
    lv, st = config.label_validation, config.steering
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
                feats = _balanceable(feats, foils, lv.n_foils, warnings)
                if not feats:
                    warnings.append(
                        "label_validation.formats: label choice left out: no label's base rate can be kept "
                        "at chance (the labels above); the study asks the other formats"
                    )
                    continue
                if per_list is not None and len(feats) < min(per_list, len(labelled)):
                    warnings.append(
                        f"label_validation.per_list: label choice asks {len(feats)} features per list, "
                        f"not {per_list} (the others have too few foils)"
                    )
                    per_list = len(feats)
            by_type.append((f"label_{fmt}", feats, per_list))
    if st.enabled:
        steered = [f for f in features if f.steering]
        check_audible(steered, config)
        by_type.append(("steering", steered, st.per_list))

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
        seeded_rng(seed, "feature-cycle", kind).shuffle(order)
        seq = list(islice(cycle(order), k_lists * m))
        n_positions = {"label_choice": lv.n_foils + 1, "steering": 3 if st.mode == "three_way" else 2}
        placed = (
            balanced_positions(seq, k_lists, m, n_positions[kind], seeded_rng(seed, "answer-positions", kind))
            if kind in n_positions
            else []
        )
        for k in range(k_lists):
            window = seq[k * m : (k + 1) * m]
            rs = []
            for feat in window:
                r = presentations.get((kind, feat.key), 0)
                presentations[(kind, feat.key)] = r + 1
                rs.append(r)
            if kind == "label_choice":
                targets = _choice_targets(window, rs, [order.index(f) for f in window])
                assignment = foils.assign(
                    [(t.label, f.all_labels) for f, t in zip(window, targets, strict=True)],
                    lv.n_foils,
                    f"{seed}|label_choice|list{k}",
                )
                warnings += [f"list {k}: label base rate unbalanced: {line}" for line in assignment.imbalance]
                for i, (feat, target, chosen) in enumerate(
                    zip(window, targets, assignment.foils, strict=True)
                ):
                    spec = _choice_trial(feat, placed[k][i][0], k, config, target, chosen)
                    chosen_targets[(k, feat.key)] = target.label
                    trials[spec.key] = spec
                    lists[k].append(spec.key)
                continue
            list_answers = {normalise(t) for (kk, _), t in chosen_targets.items() if kk == k}
            baselines: set[str] = set()
            for i, (feat, r) in enumerate(zip(window, rs, strict=True)):
                offset = order.index(feat)
                if kind == "label_rating":
                    spec = _rating_trial(feat, r, offset, k, config, list_answers)
                    if normalise(spec.meta["label"]) in list_answers:
                        warnings.append(
                            f"feature {feat.key}: list {k} rates {spec.meta['label']!r}, an answer of its "
                            "label choice trials (the feature has no other label); stimuli-builder check "
                            "reports it"
                        )
                else:
                    spec = _steering_trial(feat, r, offset, k, config, placed[k][i], baselines)
                trials[spec.key] = spec
                lists[k].append(spec.key)
            if kind == "steering" and len(baselines) < len(window):
                warnings.append(
                    f"list {k}: its {len(window)} steering trials play {len(baselines)} baseline(s), so "
                    "a participant who hears a clip recur can tell the baseline; give sae-core steer "
                    "more prompts or seeds (steering.per_list (prompt, seed) pairs per feature)"
                )

    checks = plan_attention(design, config)
    answers = attention_answers(checks, seed, _instructed_options(config, foils))
    # How often each label was offered in, and was the answer of, the instructed checks so far.
    said: tuple[Counter[str], Counter[str]] = (Counter(), Counter())
    for k, i, kind_name in checks:
        # Labels the list offers or rates elsewhere: an instructed check's options avoid them,
        # so that how often an option recurs in the list says nothing about its answer.
        seen = {normalise(o) for t in lists[k] for o in trials[t].options}
        seen |= {normalise(trials[t].meta["label"]) for t in lists[k] if trials[t].kind == "label_rating"}
        spec = _attention_trial(kind_name, k, i, answers[(k, i)], features, foils, config, said, seen)
        trials[spec.key] = spec
        lists[k].append(spec.key)
    warnings += _labels_untranslated(design, config)
    return design


def _labels_untranslated(design: Design, config: StudyConfig) -> list[str]:
    """A study in another language shows the labelers' words (English) where
    ``[label_validation.shown_as]`` gives them no text of its own: say which."""
    if config.study.language == "en":
        return []
    shown_as = config.label_validation.shown_as
    labels = {
        text
        for spec in design.trials.values()
        if spec.phase == "main" and spec.kind in ("label_choice", "label_rating")
        for text in (*spec.options, *([spec.meta["label"]] if spec.kind == "label_rating" else []))
        if text not in shown_as
    }
    if not labels:
        return []
    return [
        f"study.language is {config.study.language!r}, but {len(labels)} label(s) are shown as the "
        f"labeler wrote them: {', '.join(sorted(labels))}; give each its text in "
        "[label_validation.shown_as] (docs/study-config.md)"
    ]


def plan_attention(design: Design, config: StudyConfig) -> list[tuple[int, int, str]]:
    """(list, i, kind) of every catch trial: ``attention.rate`` of each list's main trials (at
    least one when the rate is above 0), the kinds in turn; raises ValueError where the
    server could not spread them (never first, never adjacent)."""
    checks: list[tuple[int, int, str]] = []
    kinds = config.attention.kinds
    for k, lst in enumerate(design.lists):
        n_regular = sum(design.trials[t].phase == "main" for t in lst)
        n_att = 0 if config.attention.rate == 0 else max(1, round(config.attention.rate * n_regular))
        if not attention_fits(n_regular, n_att):
            raise ValueError(
                f"attention.rate: {n_att} catch trial(s) cannot be spread among {n_regular} main trials "
                "(never first, never adjacent); lower the rate or add trials"
            )
        checks += [(k, i, kinds[(k + i) % len(kinds)]) for i in range(n_att)]
    return checks


def _instructed_options(config: StudyConfig, foils: FoilPicker) -> int:
    """Options of an instructed check: as many as a label choice, as the voice can name."""
    return min(config.label_validation.n_foils + 1, MAX_SPOKEN_OPTIONS, len(_attention_pool(foils)))


def _attention_pool(foils: FoilPicker) -> list[str]:
    return list(foils.pool) or ["piano", "drums", "guitar", "voice"]


def attention_answers(
    checks: list[tuple[int, int, str]], seed: int, n_instructed: int
) -> dict[tuple[int, int], int]:
    """Per catch trial, its answer: for an identical pair 0 ("same") or 1 ("different"), for
    an instructed check the position the voice names (issue 31.5: they were always "same"
    and always printed in the question). Each kind's answers take every value about equally
    often over the package, in an order drawn from the seed, so no answer is a safe guess."""
    rng = seeded_rng(seed, "attention-answers")
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


def _balanceable(
    features: list[SelectedFeature], foils: FoilPicker, n_foils: int, warnings: list[str]
) -> list[SelectedFeature]:
    """The features without answers whose base rate cannot be kept at chance (issue 34.1).

    A label that answers the choice trials of ``a`` features must be a foil ``n_foils``
    times as often, so at least ``n_foils * a`` of the other features must be able to show
    it as a foil (it is none of their labels). In the demo every feature had "energetic"
    among its labels: offered only as an answer, it was right 12 times in 12. Such labels
    are left out of label choice, the most lopsided first, and each is named with its
    numbers; a feature left with no label is left out of label choice.
    """
    features = list(features)
    while True:
        answers: Counter[str] = Counter()
        text: dict[str, str] = {}
        for feat in features:
            for t in feat.labels:
                answers[normalise(t.label)] += 1
                text.setdefault(normalise(t.label), t.label)
        short = []
        for label, a in answers.items():
            hosts = sum(foils.can_foil(text[label], f.labels[0].label, f.all_labels) for f in features)
            if hosts < n_foils * a:
                short.append((hosts / (n_foils * a), label, a, hosts))
        if not short:
            return features
        _, label, a, hosts = min(short)
        warnings.append(
            f"label {text[label]!r} left out of label choice: it answers {a} feature(s)' choices but can "
            f"be a foil for only {hosts} feature(s) (it is a label of the others); {n_foils * a} would "
            "keep its base rate at chance"
        )
        kept = []
        for feat in features:
            labels = [t for t in feat.labels if normalise(t.label) != label]
            if labels:
                kept.append(replace(feat, labels=labels))
            else:
                warnings.append(
                    f"feature {feat.key}: left out of label choice (no label with a balanced base rate)"
                )
        features = kept


def _choice_targets(window: list[SelectedFeature], rs: list[int], offsets: list[int]) -> list[TargetLabel]:
    """Each feature's answer in one list: its labels in turn over its presentations (so
    labelers rotate), but not an answer another feature of the list already has where the
    feature has another label: two answers "energetic" in a list need twice the foils."""
    taken: set[str] = set()
    targets = []
    for feat, r, offset in zip(window, rs, offsets, strict=True):
        n = len(feat.labels)
        turn = [feat.labels[(r + offset + j) % n] for j in range(n)]
        target = next((t for t in turn if normalise(t.label) not in taken), turn[0])
        taken.add(normalise(target.label))
        targets.append(target)
    return targets


def _label_meta(feat: SelectedFeature, target: TargetLabel, kind: str) -> dict[str, Any]:
    return {
        "feature_id": feat.feature_id,
        "layer": feat.layer,
        "group": feat.key,
        "labeler": target.labeler,
        "label": target.label,
        "clap_score": target.clap_score,
        "trial_type": kind,
    }


def _references(feat: SelectedFeature, n: int, list_index: int) -> list[ClipSource]:
    """A feature's examples as list ``list_index`` plays them: one render per list (ids,
    bytes and samples of its own, see ``_Renderer.render``), so the clips of a rating
    trial in one list do not name the answer of the same feature's label choice in
    another to anyone holding both lists' clip ids (colluding participants, a leaked
    study.json; issue 34: 0.53-0.59 against chance 0.25 when the ids were shared)."""
    return [
        ClipSource("example", str(p), use=f"list{list_index}", feature=feat.key) for p in feat.examples[:n]
    ]


def _choice_trial(
    feat: SelectedFeature,
    position: int,
    list_index: int,
    config: StudyConfig,
    target: TargetLabel,
    chosen: list[str],
) -> TrialSpec:
    lv = config.label_validation
    key = f"label_choice|{feat.key}|list{list_index}"
    # The foils in an order drawn per trial: sorted, they told the answer as the one option
    # out of order (0.57 against chance 0.25 in an independent attack, issue 34).
    foils = sorted(chosen)
    seeded_rng(config.study.design_seed, key, "foil-order").shuffle(foils)
    options = _rotate([target.label, *foils], target.label, position)
    return TrialSpec(
        key,
        "label_choice",
        "main",
        lv.question_choice,
        _references(feat, lv.examples_per_trial, list_index),
        options=options,
        correct_option=position,
        meta=_label_meta(feat, target, "label_choice"),
    )


def _rating_trial(
    feat: SelectedFeature, r: int, offset: int, list_index: int, config: StudyConfig, answers: set[str]
) -> TrialSpec:
    """Rates one of the feature's labels, not one that answers a label choice of the list:
    rating "energetic" for feature g beside a choice whose answer is "energetic" names that
    answer (issue 16.3 for the same feature; issue 34.1 for any: the rated option was right
    in 66% of the demo's choices)."""
    lv = config.label_validation
    n = len(feat.labels)
    turn = [feat.labels[(r + offset + j) % n] for j in range(n)]
    target = next((t for t in turn if normalise(t.label) not in answers), turn[0])
    scale = RatingScale(
        min=1, max=lv.rating_scale, min_label=lv.rating_min_label, max_label=lv.rating_max_label
    )
    return TrialSpec(
        f"label_rating|{feat.key}|list{list_index}",
        "label_rating",
        "main",
        translator(config.study.language)(lv.question_rating).replace(
            "{label}", lv.shown_as.get(target.label, target.label)
        ),
        _references(feat, lv.examples_per_trial, list_index),
        rating=scale,
        meta=_label_meta(feat, target, "label_rating"),
    )


def _candidate_order(mode: str, position: int, square: int) -> tuple[str, ...]:
    """The candidates (S steered, B baseline, R random direction) with S at ``position``."""
    if mode != "three_way":
        return _TWO_WAY[position]
    rows = _THREE_WAY[3 * square : 3 * square + 3]
    return next(row for row in rows if row.index("S") == position)


def check_audible(features: list[SelectedFeature], config: StudyConfig) -> None:
    """Refuse steering pairs a listener cannot tell apart (issue 34.2).

    ``sae-core steer`` records each clip's log-mel distance (dB) from its baseline
    (``sae_core.clips.log_mel_distance``); a steered clip, or in three-way trials a
    random-direction control, closer than ``steering.min_distance_db`` makes a comparison
    among clips that sound the same. Raises ValueError naming the key, the first such pair
    and ``steering.allow_inaudible``, the override.
    """
    st = config.steering
    if not st.enabled or st.allow_inaudible:
        return
    for feat in features:
        for cond in feat.steering:
            distances = [("steered", cond.steered_db)]
            if st.mode == "three_way":
                distances.append(("random-direction", cond.random_db))
            for who, db in distances:
                pair = f"feature {feat.key}, prompt {cond.prompt!r}, seed {cond.seed}"
                pair += f", strength {cond.strength:g}"
                if db is None:
                    raise ValueError(
                        "steering.min_distance_db: a steering table with each clip's log-mel distance "
                        f"from its baseline (sae-core steer writes them); this run has none for the {who} "
                        f"clip of {pair}: re-run sae-core steer, or set steering.allow_inaudible = true "
                        "to build without the check"
                    )
                if db < st.min_distance_db:
                    raise ValueError(
                        f"steering.min_distance_db: steering pairs at least {st.min_distance_db:g} dB apart; "
                        f"the {who} clip of {pair} is {db:.2f} dB from its baseline, so participants "
                        "would compare clips that sound the same: steer harder, leave the pair out "
                        "(steering.strengths, prompts, seeds), or set steering.allow_inaudible = true"
                    )


def _steering_trial(
    feat: SelectedFeature,
    r: int,
    offset: int,
    list_index: int,
    config: StudyConfig,
    placed: tuple[int, int],
    baselines: set[str],
) -> TrialSpec:
    """A comparison of the feature's steered clip with its baseline (and control).

    The (strength, prompt, seed) conditions take turns over the feature's presentations,
    but a baseline another steering trial of the list already plays is skipped where the
    feature has another: a clip heard in two trials, once each beside a different steered
    clip, is the baseline (``baselines`` holds those of the list so far)."""
    st = config.steering
    key = f"steering|{feat.key}|list{list_index}"
    n = len(feat.steering)
    turn = [feat.steering[(r + offset + j) % n] for j in range(n)]
    cond = next((c for c in turn if str(c.baseline) not in baselines), turn[0])
    baselines.add(str(cond.baseline))
    order = _candidate_order(st.mode, *placed)
    clip_of = {
        "S": ClipSource("steered", str(cond.steered), use=key, feature=feat.key),
        "B": ClipSource("baseline", str(cond.baseline), use=key, feature=feat.key),
        "R": ClipSource("random_direction", str(cond.random), use=key, feature=feat.key),
    }
    sure = RatingScale(min=1, max=5, min_label=N_("Guessing"), max_label=N_("Certain"))
    confidence = sure if st.confidence else None
    meta = {
        "feature_id": feat.feature_id,
        "layer": feat.layer,
        "group": feat.key,
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
        _references(feat, st.references, list_index),
        candidates=[clip_of[c] for c in order],
        options=[_CLIP_NAMES[i] for i in range(len(order))],
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
    said: tuple[Counter[str], Counter[str]],
    seen: Collection[str] = (),
) -> TrialSpec:
    """A catch trial whose ``answer`` only the audio tells (stimuli_builder.attention).

    ``said`` counts, per label, the earlier instructed checks that offered it and that had it
    for answer. The answer position is fixed (balanced over the package); the label put there
    is the option answered least often for how often it was offered, so every label is the
    answer of about 1 in n of the checks that offer it. Preferring labels never answered
    before (as this did) made the least offered label the answer more often than chance."""
    key = f"attention|{kind}|list{list_index}|{i}"
    rng = seeded_rng(config.study.design_seed, key)
    feat = features[int(rng.integers(len(features)))]
    clip = str(feat.examples[0])
    meta = {"check": kind, "trial_type": "attention"}
    if kind == "identical_pair":
        return identical_pair_trial(key, clip, answer, rng)
    # Looks like a label choice of the study (its question, its number of examples and of
    # options); one example says aloud which answer to choose. The options are labels not
    # of this feature where the run has enough, so the music points at none of them.
    pool = _attention_pool(foils)
    n_options = _instructed_options(config, foils)
    unrelated = [x for x in pool if x not in feat.all_labels]
    unseen = [x for x in unrelated if normalise(x) not in seen]
    pool = unseen if len(unseen) >= n_options else unrelated if len(unrelated) >= n_options else pool
    options = [str(x) for x in rng.choice(pool, size=n_options, replace=False)]
    offered, answered = said
    best = min(range(len(options)), key=lambda j: ((answered[options[j]] + 1) / (offered[options[j]] + 1), j))
    options[answer], options[best] = options[best], options[answer]
    offered.update(options)
    answered[options[answer]] += 1
    examples = [str(p) for p in feat.examples[: config.label_validation.examples_per_trial]]
    spoken = int(rng.integers(len(examples)))
    refs = [
        ClipSource("attention", p, use=key, transform=instruction(answer, config.study.language))
        if j == spoken
        else ClipSource("example", p, use=f"list{list_index}", feature=feat.key)
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


def identical_pair_trial(key: str, clip: str, answer: int, rng: np.random.Generator) -> TrialSpec:
    """A catch trial asking "Do clip A and clip B sound the same?": ``clip`` twice under two
    ids (``answer`` 0, "same"), or beside itself at half speed (1, "different"). The altered
    one is A or B at random; the pair is cut, dithered and written as any compared clips."""
    same = ClipSource("attention", clip, use=f"{key}|a")
    other = ClipSource("attention", clip, use=f"{key}|b", transform=HALF_SPEED if answer else "")
    pair = [same, other] if rng.random() < 0.5 else [other, same]
    return TrialSpec(
        key,
        "comparison",
        "main",
        N_("Do clip A and clip B sound the same?"),
        candidates=pair,
        options=[N_("They sound the same"), N_("They sound different")],
        correct_option=answer,
        meta={"check": "identical_pair", "trial_type": "attention"},
    )


def _screening_trials(config: StudyConfig, gen: Any) -> list[TrialSpec]:
    sc = config.screening
    sr = config.audio.sample_rate
    rng = seeded_rng(config.study.design_seed, "screening")
    targets = [i % 3 for i in range(sc.trials)]
    rng.shuffle(targets)
    question = {
        "huggins": N_("Which of the three noises contained a faint tone? Listen through headphones."),
        "antiphase": N_("Which of the three tones was the quietest? Listen through headphones."),
    }[sc.kind]
    specs = []
    for i, target in enumerate(targets):
        audio = _screening_audio(sc.kind, target, rng, sr)
        # Levelled as one file: a single gain keeps the intervals' relative levels, which
        # the tests depend on, and puts the trial at the study's loudness. At a fixed
        # digital level the noise was 8 LU louder than the sound the volume was set with.
        clip = gen(f"screening{i}", audio, "screening")
        specs.append(
            TrialSpec(
                f"screening|{i}",
                "screening",
                "screening",
                question,
                references=[clip],
                options=[N_("The first sound"), N_("The second sound"), N_("The third sound")],
                correct_option=target,
                meta={"check": sc.kind, "trial_type": "screening"},
                segments=generated.interval_spans(),
            )
        )
    return specs


def _screening_audio(kind: str, target: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    if kind == "huggins":
        return generated.huggins_trial(target, rng, sr)
    antiphase = int(rng.choice([j for j in range(3) if j != target]))
    return generated.antiphase_trial(target, antiphase, sr)


def _screening_example(config: StudyConfig, gen: Any) -> tuple[ClipSource, int]:
    """One more item of the check, drawn apart from the scored ones, whose answer the page says.

    Its own draw: the example teaches what to listen for and gives away nothing about the
    scored items (their targets and roved pitches come from another generator)."""
    rng = seeded_rng(config.study.design_seed, "screening-example")
    target = int(rng.integers(3))
    audio = _screening_audio(config.screening.kind, target, rng, config.audio.sample_rate)
    return gen("screening_example", audio, "screening"), target


def _practice_trials(config: StudyConfig, gen: Any) -> list[TrialSpec]:
    sr = config.audio.sample_rate
    names = {"high": N_("High-pitched melody"), "low": N_("Low-pitched melody"), "drums": N_("Drum beat")}
    specs = []
    for i in range(config.practice.trials):
        rng = seeded_rng(config.study.design_seed, "practice", i)
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
                    options=_CLIP_NAMES[:2],
                    correct_option=first,
                    correct_candidate=first,
                    feedback=True,
                    meta={"trial_type": "practice"},
                )
            )
    return specs
