"""The ``report`` stage: where the responses come from, and the report written from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis.exclusions import ExclusionRules
from analysis.report import Report, build_report, write_report
from analysis.responses import load_from_database, load_responses
from analysis.sliders import PostScreening
from artifact_schemas import ArtifactError, load_study


@dataclass
class ReportConfig:
    """What ``run_report`` needs: an export, or a database URL with a study id."""

    out: Path
    export: Path | None = None
    database_url: str | None = None
    study_id: str | None = None
    study: Path | None = None
    """The study package: gives the title and the options per label-choice trial."""
    n_options: int | None = None
    """Options per label-choice trial (chance = 1/N), for an export without its n_options
    column; default from ``study`` (an old export needs one of the two)."""
    rules: ExclusionRules = field(default_factory=ExclusionRules)
    bayes: bool = True
    """Fit the mixed models: ML (lme4, where R is installed) and variational Bayes (slower)."""
    stars_on_simulated: bool = False
    """Significance stars even on an export of simulated participants only."""
    post_screening: PostScreening = field(default_factory=PostScreening)
    """Which MUSHRA assessors the analysis leaves out (ITU-R BS.1534-3 §4.1.2)."""

    def __post_init__(self) -> None:
        if self.export is None and not (self.database_url and self.study_id):
            raise ArtifactError("<config>", "export", "an export file, or database_url and study_id")


def label_choice_options(study: Path) -> int | None:
    """The most common number of options of the package's main label-choice trials."""

    manifest = load_study(study / "study.json")
    counts = [len(t.options) for t in manifest.trials if t.kind == "label_choice" and t.phase == "main"]
    return max(set(counts), key=counts.count) if counts else None


def rating_midpoint(study: Path) -> float | None:
    """The midpoint of the package's label-rating scale ((min + max) / 2 of the most common)."""

    manifest = load_study(study / "study.json")
    scales = [
        (t.rating.min + t.rating.max) / 2
        for t in manifest.trials
        if t.kind == "label_rating" and t.phase == "main" and t.rating is not None
    ]
    return max(set(scales), key=scales.count) if scales else None


def run_report(cfg: ReportConfig) -> tuple[Path, Report]:
    """Read the responses, build the report, write it under ``cfg.out``; return report.html."""

    if cfg.export is not None:
        responses = load_responses(cfg.export)
        title = f"Report: {cfg.export.name}"
    else:
        assert cfg.database_url and cfg.study_id  # checked in __post_init__
        responses = load_from_database(cfg.database_url, cfg.study_id)
        title = f"Report: {cfg.study_id}"
    options, midpoint = cfg.n_options, None
    if cfg.study is not None:
        title = f"Report: {load_study(cfg.study / 'study.json').title}"
        options = options or label_choice_options(cfg.study)
        midpoint = rating_midpoint(cfg.study)
    built = build_report(
        responses,
        title=title,
        n_options=options,
        rules=cfg.rules,
        bayes=cfg.bayes,
        stars_on_simulated=cfg.stars_on_simulated,
        rating_midpoint=midpoint if midpoint is not None else 3.0,
        post_screening=cfg.post_screening,
    )
    return write_report(built, cfg.out), built
