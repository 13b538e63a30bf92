"""The design of a study of the researcher's own clips (issue 36): MUSHRA and slider trials.

* **MUSHRA** (ITU-R BS.1534-3): for each item, every list holds one trial (each assessor
  rates every item): the open reference, then as candidates the hidden reference, the
  anchors (the CSV's, and the reference low-pass filtered as ``mushra.anchors`` asks) and
  every condition under test, each on a 0-100 slider labelled Bad ... Excellent. Each
  list's trial of an item has its own candidate order. The hidden reference's position is
  balanced per item over the lists and over the study (``balanced_positions``, as the
  steered clip's is), so no position is a good guess; the other candidates take the
  remaining places in an order drawn per trial.
* **Slider**: one clip on a visual-analogue scale, one trial per (item, condition) that
  ``slider.conditions`` selects; every list holds every one, or with ``slider.per_list``
  list k takes the k-th window of one seeded cycle of them (so each appears in as many
  lists as the others, give or take one, and at most once per list).
* Both are grouped by item, so the server never plays two trials of an item in a row;
  the build refuses lists where no order could (``lists.separate_same_feature``).
* Catch trials are identical pairs made from the items' references, as many as
  ``attention.rate`` asks (none by default: the hidden reference is BS.1534's own check
  of an assessor, which the analysis applies).

Every clip of a trial is a :class:`ClipSource` with the trial as its ``use``: the package
renders it with dither and an offset of its own, so no file recurs anywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import cycle, islice

import numpy as np

from artifact_schemas.order import groups_separable
from artifact_schemas.study import SliderScale
from stimuli_builder.audio_prep import read_source
from stimuli_builder.conditions import Item, OwnStimuli, Stimulus
from stimuli_builder.config import StudyConfig
from stimuli_builder.design import (
    ClipSource,
    Design,
    TrialSpec,
    attention_answers,
    balanced_positions,
    identical_pair_trial,
    plan_attention,
    seeded_rng,
    start_design,
)
from stimuli_builder.generated import ANCHOR_CUTOFF_HZ, lowpass_transform

# The most clips one MUSHRA screen rates: more cannot be compared by ear on one screen
# (BS.1534-3 advises few conditions per trial; webMUSHRA's strict mode stops at 12), and the
# app takes play counts for at most 64 clips a trial.
MAX_MUSHRA_CANDIDATES = 15
# A generated anchor that removes less of its reference's energy than this (dB, the share
# above the cut-off) sounds like the reference: BS.1534's anchor is meant to be heard as
# clearly worse, and one that is not makes a low rating of it a sign of guessing, not of
# listening. -40 dB is 1/10,000 of the energy; the example's clips lose -15 to -39 dB.
INAUDIBLE_ANCHOR_DB = -40.0


def build_own_design(stimuli: OwnStimuli, config: StudyConfig) -> Design:
    """The trials and lists for ``stimuli`` under ``config`` (raises ValueError naming the key)."""
    design = start_design(config)
    design.warnings += stimuli.warnings
    if config.mushra.enabled:
        _add_mushra(design, stimuli, config)
    if config.slider.enabled:
        _add_sliders(design, stimuli, config)
    if config.abx.enabled:
        _add_abx(design, stimuli, config)
    if config.lists.separate_same_feature:
        _check_separable(design)
    seed = config.study.design_seed
    checks = plan_attention(design, config)
    # Identical pairs only (StudyConfig refuses instructed checks here): answers 0 or 1.
    answers = attention_answers(checks, seed, 2)
    for k, i, kind in checks:
        key = f"attention|{kind}|list{k}|{i}"
        rng = seeded_rng(seed, key)
        item = stimuli.items[int(rng.integers(len(stimuli.items)))]
        spec = identical_pair_trial(key, str(item.reference.path), answers[(k, i)], rng)
        design.trials[key] = spec
        design.lists[k].append(key)
    return design


def _clip(stimulus: Stimulus, use: str) -> ClipSource:
    return ClipSource(stimulus.role, str(stimulus.path), use=use, condition=stimulus.condition)


def _add_mushra(design: Design, stimuli: OwnStimuli, config: StudyConfig) -> None:
    mu = config.mushra
    k_lists, seed = config.lists.count, config.study.design_seed
    by_size: dict[int, list[Item]] = defaultdict(list)
    for item in stimuli.items:
        if not item.anchors and not mu.anchors:
            raise ValueError(
                f"mushra.anchors: at least one anchor per item (BS.1534-3); item {item.name!r} has no "
                f'anchor rows in {stimuli.csv.name} and mushra.anchors is empty: keep "lp3500"'
            )
        n = 1 + len(item.anchors) + len(mu.anchors) + len(item.conditions)
        if n > MAX_MUSHRA_CANDIDATES:
            raise ValueError(
                f"stimuli.conditions: at most {MAX_MUSHRA_CANDIDATES} clips to rate on one MUSHRA screen "
                f"(hidden reference, anchors, conditions); item {item.name!r} of {stimuli.csv.name} has {n}: "
                "split its conditions into two studies or leave some out"
            )
        by_size[n].append(item)
        design.warnings += _inaudible_anchors(item, mu.anchors, config.audio.sample_rate)
    scale = SliderScale(min=0, max=100, labels=list(mu.labels))
    # Items with as many candidates share one balance of the hidden reference's position.
    for n, items in sorted(by_size.items()):
        rng = seeded_rng(seed, "hidden-reference", n)
        placed = balanced_positions(items * k_lists, k_lists, len(items), n, rng)
        for k in range(k_lists):
            for item, (position, _) in zip(items, placed[k], strict=True):
                spec = _mushra_trial(item, k, position, config, scale)
                design.trials[spec.key] = spec
                design.lists[k].append(spec.key)


def _inaudible_anchors(item: Item, names: Sequence[str], sample_rate: int) -> list[str]:
    """A warning for each generated anchor that would take almost nothing from the reference."""
    if not names:
        return []
    audio = read_source(item.reference.path, sample_rate)
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / sample_rate)
    warnings = []
    for name in names:
        above = float(power[freqs > ANCHOR_CUTOFF_HZ[name]].sum()) / max(float(power.sum()), 1e-30)
        db = 10 * np.log10(max(above, 1e-30))
        if db < INAUDIBLE_ANCHOR_DB:
            warnings.append(
                f"mushra.anchors: {name} of item {item.name!r} removes only {db:.0f} dB of its reference's "
                f"energy (what lies above {ANCHOR_CUTOFF_HZ[name]:.0f} Hz): it will sound like the "
                "reference; add an anchor row of your own for this item (role anchor) or a lower cut-off"
            )
    return warnings


def _mushra_trial(item: Item, k: int, position: int, config: StudyConfig, scale: SliderScale) -> TrialSpec:
    """Item ``item``'s trial in list ``k``, with the hidden reference at ``position``."""
    key = f"mushra|{item.name!r}|list{k}"
    reference = _clip(item.reference, key)
    anchors = [
        ClipSource(
            "anchor",
            str(item.reference.path),
            use=key,
            condition=name,
            transform=lowpass_transform(ANCHOR_CUTOFF_HZ[name]),
        )
        for name in config.mushra.anchors
    ]
    others = [*anchors, *(_clip(s, key) for s in (*item.anchors, *item.conditions))]
    order = seeded_rng(config.study.design_seed, key, "candidates").permutation(len(others))
    candidates = [others[j] for j in order]
    candidates.insert(position, reference)
    return TrialSpec(
        key,
        "mushra",
        "main",
        config.mushra.question,
        references=[reference],
        candidates=candidates,
        sliders=scale,
        meta={"trial_type": "mushra", "item": item.name, "group": item.name},
        matched_reference=True,
    )


def _add_sliders(design: Design, stimuli: OwnStimuli, config: StudyConfig) -> None:
    sl = config.slider
    k_lists = config.lists.count
    _known_conditions(stimuli, sl.conditions, "slider.conditions")
    rated = [
        s
        for item in stimuli.items
        for s in item.stimuli
        if (s.condition in sl.conditions if sl.conditions else s.role == "condition")
    ]
    m = sl.per_list if sl.per_list is not None else len(rated)
    if m > len(rated):
        raise ValueError(f"slider.per_list: at most {len(rated)} (the clips the slider trials rate), got {m}")
    order = list(rated)
    if sl.per_list is not None:
        seeded_rng(config.study.design_seed, "slider-cycle").shuffle(order)
    seq = list(islice(cycle(order), k_lists * m))
    scale = SliderScale(min=0, max=100, labels=list(sl.labels))
    for k in range(k_lists):
        for s in seq[k * m : (k + 1) * m]:
            key = f"slider|{s.item!r}|{s.condition!r}|list{k}"
            design.trials[key] = TrialSpec(
                key,
                "slider",
                "main",
                sl.question,
                candidates=[_clip(s, key)],
                sliders=scale,
                meta={"trial_type": "slider", "item": s.item, "group": s.item},
                match_group=f"slider|{s.item!r}",
            )
            design.lists[k].append(key)


# An ABX trial's layouts, taken in turn: (the condition is A rather than B, X is B rather
# than A). Two consecutive ones always put X once on A and once on B.
_ABX_LAYOUTS = ((False, False), (False, True), (True, True), (True, False))


def _add_abx(design: Design, stimuli: OwnStimuli, config: StudyConfig) -> None:
    """Per list, item and condition ``abx.repeats`` trials: A and B are the reference and the
    condition, X the one the layout names. A list's trials take the layouts in turn (list k
    starting two on from list k - 1), so X is A in half of them, give or take one: a list
    whose every X was A would be answered without listening."""
    ab = config.abx
    _known_conditions(stimuli, ab.conditions, "abx.conditions")
    compared = [
        (item, s)
        for item in stimuli.items
        for s in item.stimuli
        if s.role != "reference"
        and (s.condition in ab.conditions if ab.conditions else s.role == "condition")
    ]
    for k in range(config.lists.count):
        turn = 2 * k
        for item, s in compared:
            for r in range(ab.repeats):
                condition_first, x_is_b = _ABX_LAYOUTS[turn % len(_ABX_LAYOUTS)]
                turn += 1
                key = f"abx|{item.name!r}|{s.condition!r}|list{k}|{r}"
                a, b = (s, item.reference) if condition_first else (item.reference, s)
                x = b if x_is_b else a
                design.trials[key] = TrialSpec(
                    key,
                    "abx",
                    "main",
                    ab.question,
                    references=[_clip(a, key), _clip(b, key)],
                    candidates=[_clip(x, key)],
                    options=["A", "B"],
                    correct_option=int(x_is_b),
                    meta={
                        "trial_type": "abx",
                        "item": item.name,
                        "group": item.name,
                        "condition": s.condition,
                    },
                    matched_reference=True,
                )
                design.lists[k].append(key)


def _known_conditions(stimuli: OwnStimuli, named: list[str], field: str) -> None:
    known = {s.condition for item in stimuli.items for s in item.stimuli}
    unknown = [c for c in named if c not in known]
    if unknown:
        raise ValueError(
            f"{field}: conditions of {stimuli.csv.name} ({', '.join(sorted(known))}); "
            f"it has no {', '.join(map(repr, unknown))}"
        )


def _check_separable(design: Design) -> None:
    """Refuse a list whose trials of one item the server could not keep apart."""
    for k, lst in enumerate(design.lists):
        groups = [design.trials[t].meta.get("group") for t in lst if design.trials[t].phase == "main"]
        if not groups_separable(groups):
            item, count = max(
                ((g, groups.count(g)) for g in set(groups) if g is not None), key=lambda gc: gc[1]
            )
            raise ValueError(
                f"lists.separate_same_feature: lists whose trials of one item can be kept apart; list "
                f"{k} has {count} trials of item {item!r} among {len(groups)}: set "
                "separate_same_feature = false, add items, or rate fewer conditions per list "
                "(slider.conditions, slider.per_list)"
            )
