"""Database tables: studies and their lists and trials, participants, sessions, responses, events.

Schema changes go through Alembic (``study_app/migrations``); a test checks that the
migrations and these models agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from artifact_schemas.tables import SESSION_STATUSES
from study_app.db import db


# Session statuses (the export's contract lists them: artifact_schemas.tables). "active"
# sessions in their trials hold a place of their list until they finish or have been
# inactive for SESSION_TIMEOUT_S (sessions.places_held); the others are final. "full": the
# list filled while the session was setting up. "returned", "timed_out", "rejected": so
# marked on Prolific, set by `study-app prolific --sync`; none holds a place, answers stay.
class SessionStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    SCREENED_OUT = "screened_out"
    DECLINED = "declined"
    ABANDONED = "abandoned"
    FULL = "full"
    RETURNED = "returned"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"


assert tuple(SessionStatus) == SESSION_STATUSES, "the export's contract and the app must agree"
ACTIVE, COMPLETED, SCREENED_OUT, DECLINED, ABANDONED, FULL, RETURNED, TIMED_OUT, REJECTED = SessionStatus


class SessionStage(StrEnum):
    """Where an active session is, in this order; the server decides, the pages follow.
    A study skips the stages its package lacks (``stages.next_stage``)."""

    VOLUME = "volume"
    SCREENING = "screening"
    INSTRUCTIONS = "instructions"
    TRIALS = "trials"
    QUESTIONNAIRE = "questionnaire"
    DONE = "done"


# How `study-app simulate`'s bots name themselves (User-Agent): the dashboard marks their
# sessions and leaves them out of the durations it reports (issue 37: "median duration
# 0.0 min" with bots). A participant who sends it only marks their own session a bot's.
BOT_AGENT = "study-app-simulate"


class StudyStatus(StrEnum):
    """Participants can start only ``open`` studies."""

    DRAFT = "draft"
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Study(db.Model):  # type: ignore[name-defined]
    """An imported study package (``study.json`` + ``key.json`` + audio directory)."""

    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=StudyStatus.DRAFT)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Absolute path of the package directory; audio is served from its audio/ folder.
    package_path: Mapped[str] = mapped_column(Text, default="")
    # Deferred: parsed once per process into a PackageView, not on every request.
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, deferred=True)
    key: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, deferred=True)
    # Per-study salt for hashing Prolific ids (a leaked export cannot be joined across studies).
    pid_salt: Mapped[str] = mapped_column(String(64), default="")
    store_raw_pid: Mapped[bool] = mapped_column(Boolean, default=False)
    # {"complete", "screened_out", "declined"} -> code: the researcher's from key.json, the
    # rest drawn with ``secrets`` at import. Never derived from anything public.
    completion_codes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The Prolific study made by `study-app prolific --create`: {"id", "settings", "reward",
    # "created_at"}; the settings (screen-out reward, currency) are what later payments use.
    prolific: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    lists: Mapped[list[TrialList]] = relationship(back_populates="study", order_by="TrialList.position")


class TrialList(db.Model):  # type: ignore[name-defined]
    __tablename__ = "trial_list"
    __table_args__ = (UniqueConstraint("study_id", "list_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    list_key: Mapped[str] = mapped_column(String(64))  # the id in study.json
    position: Mapped[int] = mapped_column(Integer)
    target: Mapped[int] = mapped_column(Integer)
    trial_ids: Mapped[list[str]] = mapped_column(JSON)

    study: Mapped[Study] = relationship(back_populates="lists")


class Trial(db.Model):  # type: ignore[name-defined]
    """One trial of ``study.json`` (public part) with its key (server-only part)."""

    __tablename__ = "trial"
    __table_args__ = (UniqueConstraint("study_id", "trial_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    trial_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(16))
    public: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer_key: Mapped[dict[str, Any]] = mapped_column(JSON)


class Participant(db.Model):  # type: ignore[name-defined]
    """A pseudonymous participant: a salted hash of the Prolific id, or a random id."""

    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("study_id", "pid_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    pid_hash: Mapped[str] = mapped_column(String(64))
    raw_pid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StudySession(db.Model):  # type: ignore[name-defined]
    """One participant's run through one list."""

    __tablename__ = "study_session"
    __table_args__ = (Index("ix_session_list_status", "list_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # what the cookie holds
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("trial_list.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    stage: Mapped[str] = mapped_column(String(16), default=SessionStage.VOLUME)
    shuffle_seed: Mapped[int] = mapped_column(BigInteger)
    trial_order: Mapped[list[str]] = mapped_column(JSON)
    position: Mapped[int] = mapped_column(Integer, default=0)
    screening_attempt: Mapped[int] = mapped_column(Integer, default=0)
    prolific_study_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    prolific_session_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # The submission's status on Prolific at the last sync (e.g. "AWAITING REVIEW").
    prolific_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_agent: Mapped[str] = mapped_column(Text, default="")
    screen: Mapped[str] = mapped_column(String(32), default="")
    ip_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    questionnaire: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # When the current trial was first sent to the browser ("attempt:position"): answers
    # sooner than its audio lasts are refused (listening.listening_floor_s).
    served_trial: Mapped[str | None] = mapped_column(String(32), nullable=True)
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    preview: Mapped[bool] = mapped_column(Boolean, default=False)
    # Run by `study-app simulate` (bots): marked by that command, which has the database;
    # the export's data_source column and the report's banner come from it.
    simulated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    trial_list: Mapped[TrialList] = relationship()
    participant: Mapped[Participant] = relationship()


# The participant API reads a study and a session on every request. As ORM objects (identity
# map, instance state, attribute instrumentation, a flush on commit) that load and the ORM's
# flush of the answer were over a third of a request's CPU (profile, issue 31); these plain
# rows of the columns it reads are what study_app.participant.study_and_session returns.


@dataclass(frozen=True, slots=True)
class StudyRef:
    """The study columns the participant API reads (a row, not an ORM object)."""

    id: int
    slug: str
    status: str
    manifest_sha256: str
    package_path: str


@dataclass(frozen=True, slots=True)
class SessionState:
    """A session as the participant API read it at the start of the request (a row, not an
    ORM object): writes go through statements that check it is still so (answers.submit_answer)."""

    id: int
    token: str
    status: str
    stage: str
    trial_order: list[str]
    position: int
    screening_attempt: int
    served_trial: str | None
    served_at: datetime | None


class Response(db.Model):  # type: ignore[name-defined]
    """One answer. (session, trial, attempt) is unique: a retried submit can never add a row."""

    __tablename__ = "response"
    # An idempotency key is the client's and counts within its session only: a key another
    # session used is a new key here, never a replay of that session's answer (issue 31.7).
    __table_args__ = (
        UniqueConstraint("session_id", "trial_id", "attempt"),
        UniqueConstraint("session_id", "idempotency_key", name="uq_response_session_idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("study_session.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"))
    # Screening can be retried (Screening.max_attempts); every other trial has attempt 0.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rating: Mapped[float | None] = mapped_column(Float, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Slider trials (mushra, slider): candidate clip id -> value on the trial's SliderScale.
    slider_values: Mapped[dict[str, int] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The participant's optional comment on the trial (study.trial_comments), at most 500 characters.
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    rt_ms: Mapped[float] = mapped_column(Float)
    play_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    client_ts: Mapped[str | None] = mapped_column(String(40), nullable=True)
    server_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    # Listening evidence the server saw: when the trial was served, and how many of its
    # clips had not been served in full to this session by the time it answered (named
    # for what it counted before migration 0008: clips never fetched at all). Answers
    # with any are refused since then (answers._listening_evidence), so new rows have 0.
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    clips_unfetched: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # What the server answered, replayed verbatim for a duplicate submit.
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class ClipRequest(db.Model):  # type: ignore[name-defined]
    """Which bytes of a clip the media endpoint served to a session (send_file, or nginx
    told by X-Accel-Redirect to send exactly the requested range): ``listening.record_clip_served``.

    A clip counts as heard once the served ranges cover its whole file (``heard_at``);
    one byte of it (``Range: bytes=0-0``) or a request the server did not answer with its
    bytes (a 304, a HEAD) does not (issue 31.3).
    """

    __tablename__ = "clip_request"
    __table_args__ = (UniqueConstraint("session_id", "clip_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("study_session.id", ondelete="CASCADE"), index=True)
    clip_id: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The file's size in bytes, and the byte ranges served: merged, sorted [start, stop)
    # pairs within it, so their union is kept exact however the requests overlap.
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    served: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    # When the served ranges first covered the whole file (None: not yet).
    heard_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Event(db.Model):  # type: ignore[name-defined]
    """Something that happened in a session: consent, screening result, tab hidden, audio error."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("study_session.id", ondelete="CASCADE"), index=True, nullable=True
    )
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_ts: Mapped[str | None] = mapped_column(String(40), nullable=True)
    server_ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Admin(db.Model):  # type: ignore[name-defined]
    """A researcher who may use /admin. Passwords are stored as scrypt hashes (werkzeug)."""

    __tablename__ = "admin"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    # Unused since migration 0009 (the lock moved to LoginThrottle, per name and address); kept
    # because dropping a column rebuilds the table on SQLite.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # In every login cookie; logout and a password change bump it, and older cookies stop working.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoginThrottle(db.Model):  # type: ignore[name-defined]
    """Failed logins in a row for one typed username from one address (both keyed HMACs).

    Per name *and* address: a stranger's wrong guesses lock only the stranger out, not the
    researcher (a lock per account let anyone keep it locked for 24 h), and a name with no
    account locks exactly like one that has, so the answers tell no usernames apart
    (issue 31.7). Rows go on a successful login and once a day has passed without a failure.
    """

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("name_digest", "ip_digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name_digest: Mapped[str] = mapped_column(String(64), index=True)
    ip_digest: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProlificPayment(db.Model):  # type: ignore[name-defined]
    """A bonus or screen-out payment to one session's Prolific submission: the record that
    makes paying at most once (``study_app.prolific.pay``).

    ``state``: "set_up" (Prolific holds a bulk bonus, not yet paid), "sent" (committed just
    before the payment call: from here on the command never pays it again, even when the
    call's answer was lost), "paid" (Prolific confirmed). One row per session and kind.
    """

    __tablename__ = "prolific_payment"
    __table_args__ = (UniqueConstraint("session_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("study_session.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "bonus" | "screen_out"
    submission_id: Mapped[str] = mapped_column(String(128))
    amount_cents: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(64), default="")
    bulk_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
