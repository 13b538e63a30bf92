"""The :class:`Report` a study's analysis fills, and what every trial type's part of it
reads (:class:`ReportInputs`): their own module so that computing (``report`` and the
trial types' modules), drawing (``report_figures``) and rendering (``report_render``) all
import them from below instead of from each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from analysis.exclusions import PostScreening

# The test of a share against chance, shared by the label-choice and steering captions.
CLUSTERED_TEST = (
    "exact one-sided binomial test and Wilson 95% CI where each participant answered once in a row, "
    "else participant-clustered: cluster-robust SE, one-sided t test with participants - 1 df "
    "(column test); Holm and BH across rows; n = responses, n_participants = participants"
)


@dataclass
class Report:
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)  # name -> SVG text
    pngs: dict[str, bytes] = field(default_factory=dict)  # name -> PNG bytes (same figure)
    meta: dict[str, Any] = field(default_factory=dict)
    # question -> (formula, the rows the models used): written for analysis.R
    model_data: dict[str, tuple[str, str, pd.DataFrame]] = field(default_factory=dict)
    # Tables left out because the study asked no trials of their type: the page names them.
    skipped: list[str] = field(default_factory=list)

    def add(self, name: str, table: pd.DataFrame, caption: str) -> None:
        """A table and its caption, in the report's order (the order they are added)."""
        self.tables[name] = table
        self.captions[name] = caption

    def skip(self, *names: str) -> None:
        """Tables a part leaves out: the study asked no trials of their type."""
        self.skipped += names


@dataclass(frozen=True)
class ReportInputs:
    """What the report's parts read: the responses left after the exclusions, and the
    settings of ``analysis.report.build_report``."""

    kept: pd.DataFrame
    n_options: int | None
    """Options per label-choice trial, only for an export without its n_options column."""
    rating_midpoint: float
    post_screening: PostScreening
    bayes: bool
    n_boot: int
    clap_line: bool

    def has(self, *trial_types: str) -> bool:
        """Whether the responses kept include trials of any of ``trial_types``: a part adds
        the tables of a type only where the study asked it (an empty table that does not
        say why is a question the study never put)."""
        return bool(self.kept["trial_type"].isin(trial_types).any()) if "trial_type" in self.kept else False


class ReportPart(Protocol):
    """A trial type's analysis in the report (or a part several types share, such as the
    correctness models): a module with these two functions. ``analysis.report.PARTS``
    lists them, in the report's order; a new trial type adds its module there."""

    def report_tables(self, r: Report, inputs: ReportInputs) -> None: ...

    def report_figures(self, r: Report, inputs: ReportInputs) -> None: ...
