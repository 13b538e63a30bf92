"""The trial types of a study of your own clips, each one module (issue 36).

A type's module holds everything the builder knows about it:

* ``NAME``: its ``trial_type`` in key.json and the export, and its config section's name;
* its config section (a :class:`stimuli_builder.sections.Section`), which ``config``
  puts in :class:`~stimuli_builder.config.StudyConfig` under ``NAME``;
* ``add_trials(design, stimuli, section, study)``: how the builder lays its trials out
  over the lists and blinds them (``study``: the lists, seed and sample rate);
* ``plan_row(stimuli, section, lists, targets)``: the test the report runs on it, sized
  (``stimuli-builder plan``);
* ``check(manifest, key)``: what ``stimuli-builder check`` verifies of a built package
  beyond what every type gets (balance across lists, no leaks in the files);
* ``hidden_answer(trial, key)``: for a type whose trials have a clip to find among their
  candidates (MUSHRA's hidden reference) that clip's position, so that the no-listening
  strategies look for it; None for the others. A type whose answer is an option (ABX)
  is scored by the options' strategies as every option trial is.

A type's module never reads the whole config (``config`` imports it for its section):
its hooks get their section and :class:`~stimuli_builder.trial_types.common.Study`.

Adding a type is its module, its name in ``OWN_TYPES`` and one field in ``StudyConfig``;
the other packages' parts are listed in docs/architecture.md. The label-validation and
steering trials of a run's SAE features share one layout of the lists (their features
are balanced over the lists together) and stay in ``design``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from stimuli_builder.trial_types import abx, mushra, slider

if TYPE_CHECKING:
    from artifact_schemas import AnswerKey, StudyManifest
    from artifact_schemas.study import Trial
    from stimuli_builder.conditions import OwnStimuli
    from stimuli_builder.layout import Design
    from stimuli_builder.power import PowerRow, PowerTargets
    from stimuli_builder.trial_types.common import Findings, Study


class OwnTrialType(Protocol):
    """What a trial type's module provides (a module is an instance of this protocol).

    ``section`` is the type's own config section (its class in the module)."""

    NAME: str
    ONCE_PER_LIST: bool
    """Whether a list holds an item's trial at most once (``check`` then counts each item's
    lists, as it does a feature's)."""

    def add_trials(self, design: Design, stimuli: OwnStimuli, section: Any, study: Study) -> None: ...

    def plan_row(self, stimuli: OwnStimuli, section: Any, lists: int, targets: PowerTargets) -> PowerRow: ...

    def check(self, manifest: StudyManifest, key: AnswerKey) -> Findings: ...

    def hidden_answer(self, trial: Trial, key: AnswerKey) -> int | None: ...


#: The types, in the order their trials are laid out and their plan rows printed.
OWN_TYPES: tuple[OwnTrialType, ...] = (mushra, slider, abx)


def own_type(name: str | None) -> OwnTrialType | None:
    """The module of trial type ``name``, or None for a type of a run's features."""
    return next((t for t in OWN_TYPES if name == t.NAME), None)
