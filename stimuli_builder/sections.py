"""The base of every study-config section, and the fields trial types share.

Apart from ``config`` so that a trial type's module (``stimuli_builder.trial_types``) can
hold its own section: ``config`` assembles the sections, and a type's module imports from
here, not from ``config``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A strict section: an unknown key or a value of the wrong type is an error naming it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# Slider labels, spread evenly from one end of the scale to the other (SliderScale.labels).
SliderLabels = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]], Field(min_length=2, max_length=11)
]
# Conditions of the conditions CSV that a trial type asks about; [] = every condition under test.
Conditions = list[Annotated[str, Field(min_length=1)]]
