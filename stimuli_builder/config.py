"""The study config (TOML): what a researcher writes to describe a listening study.

Every section is a strict pydantic model: an unknown key or a value of the wrong
type is an error naming the key and the expected type (TOML already gives typed
values, so nothing is coerced: ``per_list = "6"`` is an error, not a 6).
``docs/study-config.md`` documents every key with a complete commented example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from artifact_schemas import ArtifactError, from_validation_error, load_toml
from artifact_schemas.study import QuestionField, Slug

# Log-mel distance (dB, sae_core.clips.log_mel_distance) under which a steered or control
# clip counts as the same audio as its baseline. Measured on the shipped mini MusicGen at
# the demo's strength: steered clips 16+ dB from their baselines, random-direction controls
# a median of ~7 dB (the least 3.3 dB); one clip re-rendered with fresh dither ~0 dB.
MIN_DISTANCE_DB = 2.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StudySection(_Section):
    id: Slug
    title: Annotated[str, Field(min_length=1)]
    # Markdown files, relative to the config file.
    consent: str | None = None
    instructions: str | None = None
    debrief: str | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    # Only people who arrive from Prolific (the link carries PROLIFIC_PID) may start a
    # session: a stranger who finds the URL cannot take a place (issue 16.5).
    require_prolific_id: bool = False


class CodesSection(_Section):
    """Prolific completion codes; ``study-app import`` draws random ones for those left out."""

    complete: Annotated[str, Field(min_length=1)] | None = None
    screened_out: Annotated[str, Field(min_length=1)] | None = None
    declined: Annotated[str, Field(min_length=1)] | None = None


class FeaturesSection(_Section):
    layers: list[int] = Field(default_factory=list)
    labelers: list[str] = Field(default_factory=list)
    min_clap_score: float | None = None
    # Explicit features as "layer:feature_id" strings, e.g. "3:138".
    ids: list[Annotated[str, Field(pattern=r"^\d+:\d+$")]] = Field(default_factory=list)
    max_per_layer: Annotated[int, Field(ge=1)] | None = None
    max_features: Annotated[int, Field(ge=1)] | None = None
    stratify_by_layer: bool = True


class LabelValidationSection(_Section):
    enabled: bool = True
    formats: list[Literal["choice", "rating"]] = Field(default_factory=lambda: ["rating"], min_length=1)  # type: ignore[arg-type]
    examples_per_trial: Annotated[int, Field(ge=1, le=10)] = 3
    # Trials of each format per list; default: every selected feature once.
    per_list: Annotated[int, Field(ge=1)] | None = None
    n_foils: Annotated[int, Field(ge=1, le=9)] = 3
    foil_strategy: Literal["random", "hard"] = "random"
    # CLAP checkpoint (path or hub id) for foil_strategy = "hard".
    clap_model: str | None = None
    # Groups of words that mean the same; a foil never shares a group with the target.
    synonyms: list[list[str]] = Field(default_factory=list)
    rating_scale: Literal[5, 7] = 5
    rating_min_label: str = "Not at all"
    rating_max_label: str = "Perfectly"
    question_choice: str = "Which description fits what these clips have in common?"
    question_rating: str = "How well does “{label}” describe what these clips have in common?"

    @model_validator(mode="after")
    def _hard_needs_clap(self) -> LabelValidationSection:
        if self.foil_strategy == "hard" and not self.clap_model:
            raise ValueError("foil_strategy 'hard' needs clap_model (a CLAP checkpoint path or hub id)")
        if "{label}" not in self.question_rating:
            raise ValueError("question_rating must contain '{label}'")
        return self


class SteeringSection(_Section):
    enabled: bool = True
    # two_way: steered vs unsteered; three_way adds a random direction of matched norm.
    mode: Literal["two_way", "three_way"] = "two_way"
    references: Annotated[int, Field(ge=0, le=10)] = 2
    per_list: Annotated[int, Field(ge=1)] | None = None
    strengths: list[float] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    question: str = "Which clip sounds more like the examples above?"
    confidence: bool = True
    # The least log-mel distance (dB, from sae-core steer's steering.parquet) a steered
    # clip, and in three_way a random-direction control, must have from its baseline;
    # closer pairs are refused (docs/study-config.md gives the measurements behind 2 dB).
    min_distance_db: Annotated[float, Field(ge=0)] = MIN_DISTANCE_DB
    # Build with pairs under min_distance_db, or from a run without distances, anyway.
    allow_inaudible: bool = False


class AttentionSection(_Section):
    # Catch trials as a fraction of the main trials of a list (at least one when > 0).
    rate: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    kinds: list[Literal["instructed", "identical_pair"]] = Field(
        default_factory=lambda: ["instructed", "identical_pair"],  # type: ignore[arg-type]
        min_length=1,
    )


class PracticeSection(_Section):
    trials: Annotated[int, Field(ge=0, le=10)] = 2


class ScreeningSection(_Section):
    kind: Literal["huggins", "antiphase", "none"] = "huggins"
    trials: Annotated[int, Field(ge=1, le=30)] = 6
    pass_threshold: Annotated[int, Field(ge=1)] = 5
    max_attempts: Annotated[int, Field(ge=1, le=5)] = 1

    @model_validator(mode="after")
    def _threshold(self) -> ScreeningSection:
        if self.pass_threshold > self.trials:
            raise ValueError(f"pass_threshold ({self.pass_threshold}) > trials ({self.trials})")
        return self


class ListsSection(_Section):
    count: Annotated[int, Field(ge=1, le=1000)] = 4
    target_participants: Annotated[int, Field(ge=1)] = 10
    separate_same_feature: bool = True


class AudioSection(_Section):
    sample_rate: Literal[16000, 22050, 24000, 32000, 44100, 48000] = 44100
    format: Literal["flac", "wav", "mp3"] = "flac"
    loudness_lufs: Annotated[float, Field(ge=-40, le=-10)] = -23.0
    true_peak_dbtp: Annotated[float, Field(ge=-12, le=0)] = -1.0
    fade_ms: Annotated[float, Field(ge=0, le=500)] = 10.0


class QuestionnaireSection(_Section):
    fields: list[QuestionField] = Field(default_factory=list)


class StudyConfig(_Section):
    """A whole study config file."""

    study: StudySection
    codes: CodesSection = Field(default_factory=CodesSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    label_validation: LabelValidationSection = Field(default_factory=LabelValidationSection)
    steering: SteeringSection = Field(default_factory=SteeringSection)
    attention: AttentionSection = Field(default_factory=AttentionSection)
    practice: PracticeSection = Field(default_factory=PracticeSection)
    screening: ScreeningSection = Field(default_factory=ScreeningSection)
    lists: ListsSection = Field(default_factory=ListsSection)
    audio: AudioSection = Field(default_factory=AudioSection)
    questionnaire: QuestionnaireSection = Field(default_factory=QuestionnaireSection)

    @model_validator(mode="after")
    def _something_to_ask(self) -> StudyConfig:
        if not self.label_validation.enabled and not self.steering.enabled:
            raise ValueError("enable label_validation or steering (both are off)")
        return self


def load_config(path: str | Path) -> tuple[StudyConfig, dict[str, str]]:
    """Read and validate ``path``; return the config and its Markdown texts.

    Raises :class:`ArtifactError` naming the file and the ``section.key`` at fault.
    """
    path = Path(path)
    data = load_toml(path, "study config")
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(path, exc, doc="docs/study-config.md") from exc
    texts = {}
    for name in ("consent", "instructions", "debrief"):
        rel = getattr(config.study, name)
        if rel is None:
            continue
        text_path = path.parent / rel
        try:
            texts[name] = text_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ArtifactError(path, f"study.{name}", "a readable Markdown file", str(text_path)) from exc
    return config, texts
