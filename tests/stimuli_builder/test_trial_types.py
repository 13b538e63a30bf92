"""Issue 36: each trial type of a study of your own clips is one module, read through one registry.

What a researcher adding a type relies on: the module's section is the config's section of
that name (documented), its name is a trial type the key and the export accept, and the
builder, the planner and the checker find it through ``OWN_TYPES`` alone.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest

from artifact_schemas.study import TrialType
from stimuli_builder.config import StudyConfig
from stimuli_builder.sections import Section
from stimuli_builder.trial_types import OWN_TYPES, own_type

DOCS = Path(__file__).resolve().parents[2] / "docs" / "study-config.md"


@pytest.mark.parametrize("trial_type", OWN_TYPES, ids=lambda t: t.NAME)
def test_a_types_module_holds_its_config_section_and_is_found_by_name(trial_type: typing.Any) -> None:
    name = trial_type.NAME
    assert own_type(name) is trial_type
    assert name in typing.get_args(TrialType)  # key.json and the export accept it
    section = StudyConfig.model_fields[name].annotation
    assert isinstance(section, type) and issubclass(section, Section)
    assert inspect.getmodule(section) is trial_type  # the section lives in the type's module
    assert f"\n[{name}]" in DOCS.read_text(encoding="utf-8")  # and is documented
    for hook in ("add_trials", "plan_row", "check", "hidden_answer"):
        assert callable(getattr(trial_type, hook)), hook


def test_a_type_of_a_runs_features_is_not_an_own_type() -> None:
    assert own_type("steering") is None and own_type(None) is None
