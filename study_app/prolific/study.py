"""An imported study on Prolific: the values of Prolific's study form, creating and
publishing the study through Prolific's API, and syncing its submissions (issue 21).

Prolific needs the study URL (with its three placeholders, which it fills per
participant), the completion codes the app hands out at the end, the number of
places, and an estimated completion time. All of them follow from the package and
the public address the app is served at, so ``study-app prolific`` prints them, and
``--create`` sends them (with the reward and device requirements of a
:class:`ProlificSettings`) as a draft study. Paying (approvals, screen-outs, bonuses) is
in ``study_app.prolific.pay``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select

from artifact_schemas import from_validation_error, load_toml
from study_app.db import db
from study_app.models import (
    REJECTED,
    RETURNED,
    TIMED_OUT,
    Participant,
    Study,
    StudySession,
    utcnow,
)
from study_app.monitor import completed_durations_s
from study_app.packages import package_view
from study_app.participant import PROLIFIC_COMPLETE, PROLIFIC_PLACEHOLDERS
from study_app.prolific.client import ProlificClient, ProlificError, is_prolific_id
from study_app.sessions import pid_hash

# A rough per-screen cost beyond listening: reading, deciding, clicking. Pilots replace it.
SECONDS_PER_ANSWER = 6.0
# Consent, volume set-up, instructions and the questionnaire together.
FIXED_SECONDS = 120.0


@dataclass(frozen=True)
class ProlificSetup:
    study_url: str
    codes: dict[str, str]
    places: int
    minutes: int
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "study_url": self.study_url,
            "codes": self.codes,
            "completion_urls": {k: PROLIFIC_COMPLETE.format(code=v) for k, v in self.codes.items()},
            "places": self.places,
            "estimated_minutes": self.minutes,
            "warnings": self.warnings,
        }


def prolific_setup(study: Study, base_url: str) -> ProlificSetup:
    """The values for Prolific's form; ``base_url`` is where participants reach the app."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--base-url must look like https://study.example.org, got {base_url!r}")
    view = package_view(study)
    warnings = []
    if parts.scheme != "https":
        warnings.append("the base URL is not https: Prolific participants need an encrypted connection")
    if study.status != "open":
        warnings.append(f"the study is '{study.status}': run 'study-app open {study.slug}' before publishing")
    trials = {t.id: t for t in view.manifest.trials}
    clips = view.manifest.clips
    longest = 0.0
    for lst in view.manifest.lists:
        heard = [c for tid in lst.trials for c in (*trials[tid].references, *trials[tid].candidates)]
        listening = sum(clips[c].duration_s for c in heard)
        longest = max(longest, listening + SECONDS_PER_ANSWER * len(lst.trials))
    codes = study.completion_codes
    return ProlificSetup(
        study_url=f"{base_url.rstrip('/')}/s/{study.slug}?{PROLIFIC_PLACEHOLDERS}",
        codes={
            "completed": codes["complete"],
            "screened_out": codes["screened_out"],
            "declined": codes["declined"],
        },
        places=sum(lst.target for lst in study.lists),
        minutes=math.ceil((longest + FIXED_SECONDS) / 60),
        warnings=warnings,
    )


# Prolific's minimum reward per hour by currency (researcher help centre, 2026); it refuses
# to publish below it, and it refuses screen-out payments below it for the time spent.
MINIMUM_PER_HOUR = {"GBP": 6.00, "USD": 8.00}
DEFAULT_DESCRIPTION = (
    "Listen to short music clips and answer a few questions about each. You need headphones "
    "and a quiet place; a short headphone check comes first."
)


Device = Literal["desktop", "tablet", "mobile"]
Peripheral = Literal["audio", "camera", "download", "microphone"]


def _desktop() -> list[Device]:
    return ["desktop"]


def _audio() -> list[Peripheral]:
    return ["audio"]


class ProlificSettings(BaseModel):
    """How the study is offered on Prolific (``prolific.toml``, docs/prolific.md): the
    reward, who may take part, what a screened-out participant is paid. Everything else
    (URL, codes, places, time) follows from the package."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    reward_per_hour: Annotated[float, Field(gt=0)]
    currency: Literal["GBP", "USD"] = "GBP"
    name: Annotated[str, Field(min_length=1)] | None = None  # default: the study's title
    internal_name: Annotated[str, Field(min_length=1)] | None = None  # default: the slug
    description: Annotated[str, Field(min_length=1)] = DEFAULT_DESCRIPTION
    places: Annotated[int, Field(ge=1)] | None = None  # default: lists x target
    estimated_minutes: Annotated[int, Field(ge=1)] | None = None  # default: from the package
    devices: list[Device] = Field(default_factory=_desktop, min_length=1)
    peripherals: list[Peripheral] = Field(default_factory=_audio)
    # Paid to a participant who fails the headphone check (study currency, e.g. 0.20).
    # Set: the screened-out code pays it on Prolific, and --pay-screen-outs pays those who
    # never went back with the code. Unset: screened-out submissions wait for review.
    screen_out_reward: Annotated[float, Field(ge=0)] | None = None
    # The completion code approves at once on Prolific, skipping --approve's exclusion rules.
    auto_approve: bool = False

    @model_validator(mode="after")
    def _minimum(self) -> ProlificSettings:
        floor = MINIMUM_PER_HOUR[self.currency]
        if self.reward_per_hour < floor:
            raise ValueError(
                f"reward_per_hour {self.reward_per_hour:.2f} is under Prolific's minimum of "
                f"{floor:.2f} {self.currency} per hour"
            )
        return self


def load_prolific_settings(path: Path | None, **overrides: Any) -> ProlificSettings:
    """The settings in ``path`` (TOML, optional) with ``overrides`` (``None``s ignored) on
    top; an error names the file and the key."""
    data = load_toml(path, "settings file") if path is not None else {}
    data |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return ProlificSettings.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(path or Path("prolific settings"), exc, doc="docs/prolific.md") from exc


def pilot_minutes(study: Study) -> tuple[float, int] | None:
    """Median duration in minutes of the completed sessions, previews (pilots) included,
    and how many there were; ``None`` before the first."""
    durations = completed_durations_s(study, include_previews=True)
    if not durations:
        return None
    return statistics.median(durations) / 60, len(durations)


@dataclass
class CreatedStudy:
    prolific_id: str
    reward_cents: int
    minutes: int
    places: int
    warnings: list[str] = field(default_factory=list)


def _completion_codes(codes: dict[str, str], settings: ProlificSettings) -> list[dict[str, Any]]:
    complete = "AUTOMATICALLY_APPROVE" if settings.auto_approve else "MANUALLY_REVIEW"
    screened: dict[str, Any] = {"action": "MANUALLY_REVIEW"}
    if settings.screen_out_reward is not None:
        screened = {
            "action": "FIXED_SCREEN_OUT_PAYMENT",
            "fixed_screen_out_reward": round(settings.screen_out_reward * 100),
        }
    return [
        {"code": codes["completed"], "code_type": "COMPLETED", "actions": [{"action": complete}]},
        {"code": codes["screened_out"], "code_type": "SCREENED_OUT", "actions": [screened]},
        {
            "code": codes["declined"],
            "code_type": "NO_CONSENT",
            "actions": [{"action": "REQUEST_RETURN", "return_reason": "You did not consent to take part."}],
        },
    ]


def create_prolific_study(
    study: Study, client: ProlificClient, settings: ProlificSettings, base_url: str
) -> CreatedStudy:
    """Create ``study`` on Prolific as a draft and record its Prolific id.

    Refused when the study already has one (a second draft would split the places). The
    reward is ``reward_per_hour`` x the estimated time, rounded up to the cent; when pilot
    sessions have completed, their median duration is checked against the estimate and
    against Prolific's minimum per hour (warnings, not errors: the researcher decides).
    """
    if study.prolific and study.prolific.get("id"):
        raise ValueError(
            f"'{study.slug}' is already on Prolific as study {study.prolific['id']}: "
            "publish it with --publish, or change it on Prolific"
        )
    setup = prolific_setup(study, base_url)
    minutes = settings.estimated_minutes or setup.minutes
    places = settings.places or setup.places
    reward_cents = math.ceil(settings.reward_per_hour * minutes / 60 * 100 - 1e-9)
    warnings = list(setup.warnings)
    pilots = pilot_minutes(study)
    if pilots is not None:
        median, n = pilots
        per_hour = reward_cents / 100 / (median / 60)
        floor = MINIMUM_PER_HOUR[settings.currency]
        if median > minutes:
            warnings.append(
                f"{n} completed pilot session(s) took a median {median:.1f} min, over the "
                f"{minutes} min estimate: set estimated_minutes"
            )
        if per_hour < floor:
            warnings.append(
                f"at the pilots' median {median:.1f} min the reward of {reward_cents / 100:.2f} "
                f"{settings.currency} pays {per_hour:.2f} per hour, under Prolific's minimum of {floor:.2f}"
            )
    body = {
        "name": settings.name or study.title,
        "internal_name": settings.internal_name or study.slug,
        "description": settings.description,
        "external_study_url": setup.study_url,
        "prolific_id_option": "url_parameters",
        "completion_codes": _completion_codes(setup.codes, settings),
        "total_available_places": places,
        "estimated_completion_time": minutes,
        "reward": reward_cents,
        "device_compatibility": list(settings.devices),
        "peripheral_requirements": list(settings.peripherals),
        "is_custom_screening": settings.screen_out_reward is not None,
    }
    created = client.create_study(body)
    prolific_id = str(created.get("id") or "")
    if not prolific_id:
        raise ValueError("Prolific created the study but sent back no id: check your Prolific drafts")
    study.prolific = {
        "id": prolific_id,
        "settings": settings.model_dump(),
        "reward_cents": reward_cents,
        "minutes": minutes,
        "created_at": utcnow().isoformat(),
    }
    db.session.commit()
    return CreatedStudy(prolific_id, reward_cents, minutes, places, warnings)


def publish_prolific_study(study: Study, client: ProlificClient) -> str:
    """Publish the study made by :func:`create_prolific_study`; its Prolific id back.

    Refused unless the study is open here: participants sent to a draft or paused study
    would meet a closed door while Prolific counts their time.
    """
    prolific_id = (study.prolific or {}).get("id")
    if not prolific_id:
        raise ValueError(f"'{study.slug}' has no Prolific study yet: create it with --create first")
    if study.status != "open":
        raise ValueError(f"'{study.slug}' is '{study.status}' here: run 'study-app open {study.slug}' first")
    client.publish_study(prolific_id)
    study.prolific = {**study.prolific, "published_at": utcnow().isoformat()}  # type: ignore[dict-item]
    db.session.commit()
    return str(prolific_id)


# Prolific submission statuses that end a participant's part: the place goes back at once.
RELEASING = {"RETURNED": RETURNED, "TIMED-OUT": TIMED_OUT, "REJECTED": REJECTED}


@dataclass
class SyncResult:
    seen: int  # submissions on Prolific
    matched: int  # of those, sessions here
    released: list[str]  # "s<id> (list L): RETURNED"
    statuses: dict[str, int]  # Prolific status -> submissions
    skipped: list[str] = field(default_factory=list)  # STUDY_IDs not asked about, and why


def sync_submissions(
    study: Study, client: ProlificClient, prolific_study_ids: list[str] | None = None
) -> SyncResult:
    """Pull every submission's status from Prolific and record it beside its session
    (matched as :func:`matched_submissions` says). RETURNED, TIMED-OUT and
    REJECTED submissions end their session here with that status: it no longer holds a
    place, so the next arrival can take it; its answers stay, flagged in the export's
    ``session_status``. Idempotent: a second sync changes nothing.
    """
    result = SyncResult(0, 0, [], {})
    for _, sub, sess in matched_submissions(study, client, prolific_study_ids, skipped=result.skipped):
        result.seen += 1
        status = str(sub.get("status", ""))
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if sess is None:
            continue
        result.matched += 1
        sess.prolific_status = status[:32]
        ended = RELEASING.get(status)
        if ended is not None and sess.status != ended:
            sess.status = ended
            sess.finished_at = sess.finished_at or utcnow()
            result.released.append(f"s{sess.id} (list {sess.trial_list.list_key}): {status}")
    db.session.commit()
    return result


def paying_study_ids(study: Study, given: list[str] | None = None) -> list[str]:
    """The Prolific studies whose submissions may be approved or paid for this study: those
    the researcher gives (``--prolific-study``), else the one ``--create`` recorded.

    Never the STUDY_IDs sessions arrived with: a participant chooses those, and one who
    arrived with another study's STUDY_ID and submission id got that submission approved
    (issue 31.4). ValueError when there is none, or a given one is not a Prolific id.
    """
    if given:
        bad = [g for g in given if not is_prolific_id(g)]
        if bad:
            raise ValueError(f"--prolific-study {bad[0]!r} is not a Prolific id (24 hex digits)")
        return list(given)
    recorded = (study.prolific or {}).get("id")
    if not recorded:
        raise ValueError(
            f"'{study.slug}' has no Prolific study recorded (it was not made with --create): "
            "give its Prolific id with --prolific-study"
        )
    return [str(recorded)]


def matched_submissions(
    study: Study,
    client: ProlificClient,
    prolific_study_ids: list[str] | None = None,
    *,
    skipped: list[str] | None = None,
) -> Iterator[tuple[str, dict[str, Any], StudySession | None]]:
    """(Prolific study id, submission, its session here or ``None``) for every submission.

    The Prolific studies: those given, else the one ``--create`` recorded and every
    STUDY_ID the sessions arrived with that is a Prolific id. One arrival's STUDY_ID must
    not stop the rest (its ``st1/../x`` made every sync fail, issue 31.4): one that is not
    a Prolific id is not asked about, and one Prolific answers 403 or 404 for (not the
    researcher's study) is passed over; both are listed in ``skipped``. A session is
    matched by Prolific's submission id (the SESSION_ID it was opened with), else by the
    participant's Prolific id (hashed as stored; the participant's latest session): paying
    checks that all three ids agree (``study_app.prolific.pay``).
    """
    # One query: the sessions with their participants' hashed ids (no lazy load per session).
    rows = db.session.execute(
        select(StudySession, Participant.pid_hash)
        .join(Participant, StudySession.participant_id == Participant.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
        .order_by(StudySession.id)
    ).all()
    arrived: dict[str, int] = {}  # STUDY_IDs only participants' links gave -> a session
    if prolific_study_ids:
        ids = list(prolific_study_ids)
    else:
        recorded = {str(study.prolific["id"])} if study.prolific and study.prolific.get("id") else set()
        for s, _ in rows:
            if s.prolific_study_id and s.prolific_study_id not in recorded:
                arrived.setdefault(s.prolific_study_id, s.id)
        ids = []
        for sid in sorted(set(arrived) | recorded):
            if is_prolific_id(sid):
                ids.append(sid)
            elif skipped is not None:
                skipped.append(
                    f"STUDY_ID {sid[:80]!r} (s{arrived[sid]}) is not a Prolific id: not asked about"
                )
    by_submission = {s.prolific_session_id: s for s, _ in rows if s.prolific_session_id}
    by_participant = {digest: s for s, digest in rows}  # the latest session of each participant
    for prolific_id in ids:
        try:
            for sub in client.submissions(prolific_id):
                sess = by_submission.get(str(sub.get("id", "")))
                if sess is None and sub.get("participant_id"):
                    sess = by_participant.get(pid_hash(study, str(sub["participant_id"])))
                yield prolific_id, sub, sess
        except ProlificError as exc:
            if prolific_id not in arrived or exc.status not in (403, 404):
                raise
            if skipped is not None:
                skipped.append(f"STUDY_ID {prolific_id} (s{arrived[prolific_id]}): {exc}")
