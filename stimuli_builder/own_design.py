"""The design of a study of the researcher's own clips (issue 36).

Each trial type lays its own trials out (``stimuli_builder.trial_types``: MUSHRA, slider,
ABX); this module runs the enabled ones in turn and adds what they share:

* Trials are grouped by item, so the server never plays two trials of an item in a row;
  the build refuses lists where no order could (``lists.separate_same_feature``).
* Catch trials are identical pairs made from the items' references, as many as
  ``attention.rate`` asks (none by default: the hidden reference is BS.1534's own check
  of an assessor, which the analysis applies).

Every clip of a trial is a :class:`ClipSource` with the trial as its ``use``: the package
renders it with dither and an offset of its own, so no file recurs anywhere.
"""

from __future__ import annotations

from artifact_schemas.order import groups_separable
from stimuli_builder.conditions import OwnStimuli
from stimuli_builder.config import StudyConfig
from stimuli_builder.design import attention_answers, identical_pair_trial, plan_attention, start_design
from stimuli_builder.layout import Design, seeded_rng


def build_own_design(stimuli: OwnStimuli, config: StudyConfig) -> Design:
    """The trials and lists for ``stimuli`` under ``config`` (raises ValueError naming the key)."""
    design = start_design(config)
    design.warnings += stimuli.warnings
    for trial_type, section in config.own_types():
        trial_type.add_trials(design, stimuli, section, config.own_study())
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
