"""The study config (TOML): what a researcher writes to describe a listening study.

Every section is a strict pydantic model: an unknown key or a value of the wrong
type is an error naming the key and the expected type (TOML already gives typed
values, so nothing is coerced: ``per_list = "6"`` is an error, not a 6).
``docs/study-config.md`` documents every key with a complete commented example.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from artifact_schemas import ArtifactError, from_validation_error, load_toml
from artifact_schemas.study import N_, Language, QuestionField, Slug
from stimuli_builder.sections import Section as _Section
from stimuli_builder.trial_types import OWN_TYPES, OwnTrialType
from stimuli_builder.trial_types.abx import AbxSection
from stimuli_builder.trial_types.common import Study
from stimuli_builder.trial_types.mushra import MushraSection
from stimuli_builder.trial_types.slider import SliderSection

# Log-mel distance (dB, sae_core.clips.log_mel_distance) under which a steered or control
# clip counts as the same audio as its baseline. Measured on the shipped mini MusicGen at
# the demo's strength: steered clips 16+ dB from their baselines, random-direction controls
# a median of ~7 dB (the least 3.3 dB); one clip re-rendered with fresh dither ~0 dB.
MIN_DISTANCE_DB = 2.0


class StudySection(_Section):
    id: Slug
    title: Annotated[str, Field(min_length=1)]
    # Markdown files, relative to the config file.
    consent: str | None = None
    instructions: str | None = None
    debrief: str | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    # A secret mixed into the seed (hex). Without it a study's design followed from its
    # seed and the public code, and an attack that tried seeds 0 to 10^6 against study.json
    # found the demo's (7) and with it every answer (issue 34). ``build`` draws one per
    # package when it is absent and records it in run.json; give it here to rebuild that
    # package exactly. Keep it, like key.json, off anything participants can reach.
    salt: Annotated[str, Field(pattern=r"^[0-9a-f]{32,}$")] | None = None
    # Only people who arrive from Prolific (the link carries PROLIFIC_PID) may start a
    # session: a stranger who finds the URL cannot take a place (issue 16.5).
    require_prolific_id: bool = False
    # Under every trial, an optional box for a comment in the participant's own words
    # (at most 500 characters), exported beside the answer.
    trial_comments: bool = False
    # The language of what the software says to participants (pages, buttons, the default
    # questions and scale labels below, the headphone check). Consent, instructions,
    # debrief, questionnaire and any question you set here are yours, in this language.
    language: Language = "en"

    @property
    def design_seed(self) -> int:
        """What every random choice of the design and the audio is drawn from: the seed
        and the salt, hashed (the seed alone where there is no salt: a design built
        without ``build``, as the tests build some)."""
        if self.salt is None:
            return self.seed
        return int.from_bytes(hashlib.sha256(f"{self.seed}|{self.salt}".encode()).digest()[:8], "little")


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
    # What participants read for a label, where it is not the labeler's word: a study in
    # another language names each label in it, e.g. {"energetic" = "energiegeladen"}. The
    # export's answer_text and the analysis use the text shown; key.json keeps the label.
    shown_as: dict[str, Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=dict)
    rating_min_label: str = N_("Not at all")
    rating_max_label: str = N_("Perfectly")
    question_choice: str = N_("Which description fits what these clips have in common?")
    question_rating: str = N_("How well does “{label}” describe what these clips have in common?")

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
    question: str = N_("Which clip sounds more like the examples above?")
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


class StimuliSection(_Section):
    """The researcher's own clips (issue 36): a CSV of conditions instead of a run directory."""

    # Relative to the config file; columns item, condition, file, role (stimuli_builder.conditions).
    conditions: Annotated[str, Field(min_length=1)]


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
    stimuli: StimuliSection | None = None
    # The trial types of your own clips, one field each (stimuli_builder.trial_types).
    mushra: MushraSection = Field(default_factory=MushraSection)
    slider: SliderSection = Field(default_factory=SliderSection)
    abx: AbxSection = Field(default_factory=AbxSection)

    def own_types(self) -> list[tuple[OwnTrialType, Any]]:
        """The enabled trial types of your own clips, each with its section, in
        ``OWN_TYPES`` order."""
        sections = [(t, getattr(self, t.NAME)) for t in OWN_TYPES]
        return [(t, section) for t, section in sections if section.enabled]

    def own_study(self) -> Study:
        """What a trial type's layout needs beyond its section."""
        return Study(lists=self.lists.count, seed=self.study.design_seed, sample_rate=self.audio.sample_rate)

    @model_validator(mode="before")
    @classmethod
    def _own_stimuli_defaults(cls, data: Any) -> Any:
        """With ``[stimuli]``, the sections about a run's features and the label-choice
        practice are off unless written, and catch trials are identical pairs: the one kind
        that needs no labels (docs/study-config.md, "Your own stimuli")."""
        if not isinstance(data, dict) or "stimuli" not in data:
            return data
        data = dict(data)
        for section in ("label_validation", "steering"):
            data.setdefault(section, {"enabled": False})
        data.setdefault("practice", {"trials": 0})
        attention = data.setdefault("attention", {"rate": 0.0})
        if isinstance(attention, dict) and "kinds" not in attention:
            data["attention"] = {**attention, "kinds": ["identical_pair"]}
        return data

    @model_validator(mode="after")
    def _something_to_ask(self) -> StudyConfig:
        if self.stimuli is not None:
            return self._own_stimuli_only()
        wrote = self.model_fields_set
        if any(t.NAME in wrote for t, _ in self.own_types()):
            raise ValueError(
                'stimuli.conditions: a [stimuli] section with conditions = "conditions.csv": mushra, '
                'slider and abx trials are about your own clips (docs/study-config.md, "Your own stimuli")'
            )
        if not self.label_validation.enabled and not self.steering.enabled:
            raise ValueError(
                "label_validation.enabled: label_validation or steering enabled (both are off), "
                "or your own clips rated in a [stimuli] section"
            )
        return self

    def _own_stimuli_only(self) -> StudyConfig:
        """An own-stimuli study asks MUSHRA and slider trials only: label validation, steering,
        feature selection and practice are about a run's SAE features and its labels."""
        for name in ("label_validation", "steering"):
            if getattr(self, name).enabled:
                raise ValueError(
                    f"{name}.enabled: no [{name}] in a study of your own clips ([stimuli]): it asks "
                    f"mushra and slider trials, and {name} needs a run's SAE features"
                )
        if "features" in self.model_fields_set:
            raise ValueError(
                "features: no [features] in a study of your own clips ([stimuli]): it has no run"
            )
        if self.practice.trials:
            raise ValueError(
                "practice.trials: 0 in a study of your own clips ([stimuli]): the practice trials "
                "are label choices and comparisons of generated tones"
            )
        if self.attention.rate > 0 and "instructed" in self.attention.kinds:
            raise ValueError(
                'attention.kinds: ["identical_pair"] in a study of your own clips ([stimuli]): an '
                "instructed check looks like a label choice, which such a study never asks"
            )
        if not self.own_types():
            raise ValueError("mushra.enabled: mushra, slider or abx trials enabled (all are off)")
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
        raise _config_error(path, exc) from exc
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


def _config_error(path: Path, exc: ValidationError) -> ArtifactError:
    """The first problem of ``exc``, naming ``section.key``: a check across sections (a model
    validator) says which key its message is about as "section.key: message"."""
    err = exc.errors(include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    if not err["loc"] and err["type"] == "value_error" and cause is not None:
        field, _, message = str(cause).partition(": ")
        return ArtifactError(path, field, message, has_value=False)
    return from_validation_error(path, exc, doc="docs/study-config.md")
