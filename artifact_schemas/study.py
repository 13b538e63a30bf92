"""Schemas of a study package: the public ``study.json`` and the secret ``key.json``.

``study.json`` is sent (in parts) to participants' browsers, so by construction
it holds only opaque ids, option texts and order. Everything that would reveal
an answer (which option is correct, which clip is steered, feature, layer,
labeler, CLAP score) lives in ``key.json``, which never leaves the server.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Final = 1

# Opaque ids: no dots or slashes (they become URL segments and file names, and
# must never be joined into a filesystem path).
OpaqueId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]

# The public kind is the trial's *layout* only: a steering-detection trial and an
# identical-pair catch trial both look like "comparison", so study.json never says
# which trials are catch trials or involve steering. TrialKey.trial_type says it.
# "mushra" (ITU-R BS.1534: an open reference, then the hidden reference, anchors and the
# conditions, each on its own 0-100 slider) and "slider" (one clip on a visual-analogue
# scale) are answered with sliders, one per candidate clip (Trial.sliders). "abx": two
# references A and B, one candidate X, and the options "A" and "B" (which one X is).
# The languages a study can be in: each has a complete catalog of what the software itself
# says to participants, in stimuli_builder/translations (question texts, scale labels,
# the headphone check) and study_app/translations (pages, buttons, messages). English
# is the source; docs/study-app.md, "Adding a language", says how to add one.
Language = Literal["en", "de"]
LANGUAGES: Final[tuple[str, ...]] = get_args(Language)


def N_(text: str) -> str:
    """Mark ``text`` for its package's catalog (``make translations``); it is translated
    where it is shown (stimuli_builder.i18n.translator, study_app's gettext)."""
    return text


TrialKind = Literal["label_choice", "label_rating", "comparison", "screening", "mushra", "slider", "abx"]
TrialType = Literal[
    "label_choice",
    "label_rating",
    "steering",
    "attention",
    "screening",
    "practice",
    "mushra",
    "slider",
    "abx",
]
Phase = Literal["screening", "practice", "main"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Clip(_Strict):
    """An audio file of the package, addressed by an opaque id."""

    file: Annotated[str, Field(pattern=r"^audio/[A-Za-z0-9_-]+\.(flac|wav|mp3|ogg)$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    duration_s: Annotated[float, Field(gt=0)]


class Option(_Strict):
    """A response option shown to the participant (a label, or 'first'/'second' clip)."""

    id: OpaqueId
    text: Annotated[str, Field(min_length=1, max_length=500)]


class RatingScale(_Strict):
    min: int = 1
    max: Annotated[int, Field(ge=2, le=11)] = 5
    min_label: str = ""
    max_label: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> RatingScale:
        if self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        return self


class SliderScale(_Strict):
    """A continuous scale answered with a slider per candidate clip (MUSHRA, visual analogue).

    ``labels`` are spread evenly from ``min`` to ``max`` (BS.1534's five: Bad ... Excellent);
    the answer is an integer in [min, max]. A slider starts unset: the page needs each one
    moved before it submits, so a default position is never taken for an answer.
    """

    min: int = 0
    max: Annotated[int, Field(le=1000)] = 100
    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> SliderScale:
        if self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        if len(self.labels) == 1 or len(self.labels) > 11:
            raise ValueError(f"labels: none or 2-11 (spread from min to max), got {len(self.labels)}")
        return self


class Trial(_Strict):
    """One screen the participant answers."""

    id: OpaqueId
    kind: TrialKind
    phase: Phase = "main"
    question: Annotated[str, Field(min_length=1)]
    # Clips heard first (a feature's examples); each must play through before answering.
    references: list[OpaqueId] = Field(default_factory=list)
    # Clips compared (steering: baseline/steered/random control in balanced order).
    candidates: list[OpaqueId] = Field(default_factory=list)
    options: list[Option] = Field(default_factory=list)
    rating: RatingScale | None = None
    # One slider per candidate clip ("mushra" and "slider" trials): the answer maps each
    # candidate's id to its value.
    sliders: SliderScale | None = None
    # Optional "how sure are you?" rating asked with a choice (steering detection).
    confidence: RatingScale | None = None
    # Practice trials tell the participant whether they were right.
    feedback: bool = False
    # Spans (start, end in seconds) of the one reference clip that the options name in
    # order: a headphone check's three sounds. The page shows which one is playing.
    segments: list[tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]]] = Field(
        default_factory=list
    )

    @model_validator(mode="after")
    def _answerable(self) -> Trial:
        if self.kind in ("mushra", "slider"):
            self._slider_layout()
        elif self.sliders is not None:
            raise ValueError(f"'sliders' belong to mushra and slider trials, not '{self.kind}'")
        elif not self.options and self.rating is None:
            raise ValueError("a trial needs 'options' or a 'rating' scale to be answerable")
        shape = (len(self.references), len(self.candidates), len(self.options))
        if self.kind == "abx" and shape != (2, 1, 2):
            raise ValueError(
                "an abx trial has 2 references (A, B), 1 candidate (X) and 2 options, got "
                f"{len(self.references)}, {len(self.candidates)} and {len(self.options)}"
            )
        ids = [o.id for o in self.options]
        if len(ids) != len(set(ids)):
            raise ValueError(f"option ids must be unique, got {ids}")
        if self.segments and len(self.references) != 1:
            raise ValueError(f"'segments' time one reference clip; this trial has {len(self.references)}")
        if any(end <= start for start, end in self.segments):
            raise ValueError(f"every segment ends after it starts, got {self.segments}")
        return self

    def _slider_layout(self) -> None:
        if self.sliders is None:
            raise ValueError(f"a {self.kind} trial needs 'sliders'")
        if self.options or self.rating is not None or self.confidence is not None:
            raise ValueError(f"a {self.kind} trial is answered with its sliders only (no options or ratings)")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"a {self.kind} trial's candidates must be distinct, got {self.candidates}")
        if self.kind == "slider" and len(self.candidates) != 1:
            raise ValueError(f"a slider trial rates one candidate clip, got {len(self.candidates)}")
        # BS.1534: the open reference, then the hidden reference, at least one anchor and
        # at least one condition under test.
        if self.kind == "mushra" and (len(self.references) != 1 or len(self.candidates) < 3):
            raise ValueError(
                "a mushra trial needs one reference and at least 3 candidates (hidden reference, "
                f"anchor, condition), got {len(self.references)} and {len(self.candidates)}"
            )


class TrialList(_Strict):
    """A fixed set of trials; each participant is assigned one list."""

    id: OpaqueId
    trials: Annotated[list[OpaqueId], Field(min_length=1)]
    target_participants: Annotated[int, Field(ge=1)] = 1


class Texts(_Strict):
    """Participant-facing texts (Markdown)."""

    consent: str = ""
    instructions: str = ""
    debrief: str = ""


class ScreeningExample(_Strict):
    """One headphone-check item shown with its answer before the scored ones (never scored)."""

    clip: OpaqueId
    target: Annotated[int, Field(ge=0, le=2)]
    """Which of the three sounds is the one to find (0-based): the page says so."""
    segments: list[tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(gt=0)]]]


class Screening(_Strict):
    """Headphone screening: which test, how many of its trials must be right, retries."""

    kind: Literal["huggins", "antiphase"]
    pass_threshold: Annotated[int, Field(ge=1)]
    max_attempts: Annotated[int, Field(ge=1)] = 1
    example: ScreeningExample | None = None


class OrderRules(_Strict):
    """How the server orders a list's trials for each session (a seeded shuffle).

    Phases run screening -> practice -> main. Within the main phase trials are
    shuffled with the session's seed; attention trials are spread evenly, never
    first and never adjacent; with ``separate_groups`` two trials about the same
    feature (the grouping lives in ``key.json``) are never next to each other.
    """

    shuffle: bool = True
    separate_groups: bool = True
    attention_spacing: Literal["even"] = "even"


class QuestionField(_Strict):
    """One question of the end-of-study questionnaire."""

    id: OpaqueId
    label: Annotated[str, Field(min_length=1, max_length=500)]
    type: Literal["text", "number", "choice"] = "text"
    choices: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list)
    required: bool = False

    @model_validator(mode="after")
    def _choices_match_type(self) -> QuestionField:
        if self.type == "choice" and len(self.choices) < 2:
            raise ValueError(f"question '{self.id}' of type 'choice' needs at least 2 choices")
        if self.type != "choice" and self.choices:
            raise ValueError(f"question '{self.id}' has choices but type '{self.type}'")
        return self


class StudyManifest(_Strict):
    """``study.json``: the public description of a study package."""

    schema_version: Literal[1] = SCHEMA_VERSION
    study_id: Slug
    title: Annotated[str, Field(min_length=1)]
    texts: Texts = Field(default_factory=Texts)
    clips: dict[OpaqueId, Clip]
    trials: Annotated[list[Trial], Field(min_length=1)]
    lists: Annotated[list[TrialList], Field(min_length=1)]
    order: OrderRules = Field(default_factory=OrderRules)
    screening: Screening | None = None
    # Played on the volume set-up page (at the study's loudness target).
    calibration_clip: OpaqueId | None = None
    questionnaire: list[QuestionField] = Field(default_factory=list)
    # The consent page refuses to start a session without a Prolific participant id.
    require_prolific_id: bool = False
    # Every trial offers an optional comment box (at most 500 characters), sent and
    # exported with the trial's answer (the responses' comment column).
    trial_comments: bool = False
    # What the app says to participants is in this language (the texts above are the
    # researcher's own, written in it).
    language: Language = "en"

    @model_validator(mode="after")
    def _references_resolve(self) -> StudyManifest:
        trial_ids = [t.id for t in self.trials]
        if len(trial_ids) != len(set(trial_ids)):
            raise ValueError("trial ids must be unique")
        known = set(trial_ids)
        for lst in self.lists:
            missing = [t for t in lst.trials if t not in known]
            if missing:
                raise ValueError(f"list '{lst.id}' names unknown trials {missing[:5]}")
        for trial in self.trials:
            missing = [c for c in (*trial.references, *trial.candidates) if c not in self.clips]
            if missing:
                raise ValueError(f"trial '{trial.id}' names unknown clips {missing[:5]}")
        list_ids = [lst.id for lst in self.lists]
        if len(list_ids) != len(set(list_ids)):
            raise ValueError("list ids must be unique")
        if self.calibration_clip is not None and self.calibration_clip not in self.clips:
            raise ValueError(f"calibration_clip '{self.calibration_clip}' is not among the clips")
        if self.screening is not None:
            example = self.screening.example
            if example is not None and example.clip not in self.clips:
                raise ValueError(f"screening.example.clip '{example.clip}' is not among the clips")
            n = sum(t.kind == "screening" for t in self.trials)
            if self.screening.pass_threshold > n:
                raise ValueError(f"screening.pass_threshold {self.screening.pass_threshold} > {n} trials")
        return self


# A researcher's own stimuli (stimuli-builder build --stimuli): the reference (open and
# hidden), an anchor, or a condition under test; ClipKey.condition names which. The one
# definition of these roles: the conditions CSV, the builder's check and the slider
# analysis read them from here.
StimulusRole = Literal["reference", "anchor", "condition"]
STIMULUS_ROLES: tuple[StimulusRole, ...] = get_args(StimulusRole)

ClipRole = (
    Literal[
        "example",
        "baseline",
        "steered",
        "random_direction",
        "attention",
        "screening",
        "calibration",
    ]
    | StimulusRole
)


class ClipKey(_Strict):
    """Where a package clip came from (never sent to a browser)."""

    role: ClipRole
    source: str = ""
    feature_id: int | None = None
    layer: int | None = None
    # Own stimuli: the condition of the conditions CSV ("reference", "lp3500", "codec_a", ...).
    condition: str | None = None


class TrialKey(_Strict):
    """The answer and metadata of one trial (never sent to a browser)."""

    correct_option: OpaqueId | None = None
    correct_clip: OpaqueId | None = None
    feature_id: Annotated[int, Field(ge=0)] | None = None
    layer: Annotated[int, Field(ge=0)] | None = None
    labeler: str | None = None
    label: str | None = None
    clap_score: float | None = None
    strength: float | None = None
    prompt: str | None = None
    seed: int | None = None
    # What the trial measures (the export's trial_type); set by the builder.
    trial_type: TrialType | None = None
    # Trials with the same group are about the same feature (OrderRules.separate_groups).
    group: str | None = None
    # What the attention or screening trial checks (e.g. 'identical_pair', 'huggins').
    check: str | None = None
    # Own stimuli: the item (piece of music) of the conditions CSV the trial is about, and
    # the condition an abx trial tells apart from the item's reference.
    item: str | None = None
    condition: str | None = None
    # The options the trial offers (label choice: foils + 1; steering: its clips; ABX: A
    # and B) and the share a guess gets right, 1 / n_options: the analysis's chance, here
    # for anyone reading the key (the export carries n_options per row). None for a trial
    # answered on a scale. Set by the builder; packages built before them have neither.
    n_options: Annotated[int, Field(ge=1)] | None = None
    chance: Annotated[float, Field(gt=0, le=1)] | None = None

    @model_validator(mode="after")
    def _chance_of_its_options(self) -> TrialKey:
        if (self.n_options is None) != (self.chance is None) or (
            self.n_options is not None
            and self.chance is not None
            and abs(self.chance * self.n_options - 1) > 1e-9
        ):
            raise ValueError(
                f"chance must be 1 / n_options (n_options {self.n_options}, chance {self.chance})"
            )
        return self


class CompletionCodes(_Strict):
    """Codes participants get at the end (Prolific completion codes) that the researcher chose.

    A code left out (null) is drawn at random by ``study-app import`` and lives only in
    the study database: a code must never follow from anything a participant can see.
    """

    complete: Annotated[str, Field(min_length=1)] | None = None
    screened_out: Annotated[str, Field(min_length=1)] | None = None
    declined: Annotated[str, Field(min_length=1)] | None = None


class AnswerKey(_Strict):
    """``key.json``: answers and stimulus metadata of a study package."""

    schema_version: Literal[1] = SCHEMA_VERSION
    study_id: Slug
    manifest_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    codes: CompletionCodes = Field(default_factory=CompletionCodes)
    trials: dict[OpaqueId, TrialKey]
    clips: dict[OpaqueId, ClipKey] = Field(default_factory=dict)

    def check_matches(self, manifest: StudyManifest) -> list[str]:
        """Problems that make this key unusable with ``manifest`` (empty when consistent)."""
        problems = []
        if self.study_id != manifest.study_id:
            problems.append(f"study_id '{self.study_id}' != manifest '{manifest.study_id}'")
        missing = [t.id for t in manifest.trials if t.id not in self.trials]
        if missing:
            problems.append(f"no key for trials {missing[:5]}")
        # A key that states the options must state the trial's: an analysis reading chance
        # off the key would test against the wrong one.
        miscounted = [
            t.id
            for t in manifest.trials
            if t.id in self.trials and (n := self.trials[t.id].n_options) is not None and n != len(t.options)
        ]
        if miscounted:
            problems.append(f"n_options differs from the trial's options for trials {miscounted[:5]}")
        return problems
