"""A session's stages: which follows which (:func:`next_stage`), the current trial, the
questionnaire and completion, and the session's event log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from study_app.db import db
from study_app.models import (
    ACTIVE,
    COMPLETED,
    Event,
    SessionStage,
    SessionState,
    Study,
    StudyRef,
    StudySession,
    utcnow,
)
from study_app.packages import package_view

# Stages before the first trial: a session there has not started the study's real work.
SETUP_STAGES = (SessionStage.VOLUME, SessionStage.SCREENING, SessionStage.INSTRUCTIONS)


def next_stage(study: Study | StudyRef, stage: SessionStage | None) -> SessionStage:
    """The stage after ``stage`` (None: the first) in ``study``'s flow.

    volume -> screening -> instructions -> trials -> questionnaire -> done, without the
    volume page when the package has no calibration clip, without screening when it
    has no headphone check, without the questionnaire when it asks none.
    """
    manifest = package_view(study).manifest
    skipped = {
        SessionStage.VOLUME: not manifest.calibration_clip,
        SessionStage.SCREENING: not manifest.screening,
        SessionStage.QUESTIONNAIRE: not manifest.questionnaire,
    }
    order = list(SessionStage)
    for candidate in order[0 if stage is None else order.index(SessionStage(stage)) + 1 :]:
        if not skipped.get(candidate, False):
            return candidate
    return SessionStage.DONE


def record_event(
    study: Study | StudyRef,
    sess: StudySession | SessionState | None,
    kind: str,
    data: dict[str, Any],
    client_ts: str | None = None,
) -> None:
    db.session.add(
        Event(
            study_id=study.id, session_id=sess.id if sess else None, kind=kind, data=data, client_ts=client_ts
        )
    )
    db.session.commit()


def recent_events(sess: StudySession | SessionState, kinds: frozenset[str], seconds: float) -> int:
    """Events of ``kinds`` that ``sess`` recorded in the last ``seconds`` (the event rate limit)."""
    since = utcnow() - timedelta(seconds=seconds)
    query = select(func.count(Event.id)).where(
        Event.session_id == sess.id, Event.kind.in_(kinds), Event.server_ts >= since
    )
    return db.session.scalar(query) or 0


def touch(sess: StudySession) -> None:
    sess.last_seen_at = utcnow()


def phase_of(study: Study | StudyRef, trial_key: str) -> str:
    return package_view(study).trial_types[trial_key]


def finish_questionnaire(sess: StudySession, answers: dict[str, Any]) -> None:
    if sess.stage != SessionStage.QUESTIONNAIRE or sess.status != ACTIVE:
        return
    sess.questionnaire = answers
    complete_session(sess)
    db.session.commit()


def complete_session(sess: StudySession) -> None:
    sess.status = COMPLETED
    sess.stage = SessionStage.DONE
    sess.finished_at = utcnow()
    touch(sess)


@dataclass(frozen=True)
class TrialView:
    """The public view of the current trial: what the browser is allowed to know."""

    trial: dict[str, Any]
    position: int
    total: int
    next_clips: list[str]
    step: int = 0
    """This trial's number among the trials of its phase in the session (1-based)."""
    steps: int = 0
    """How many trials of its phase the session has ("Trial 3 of 25": main trials only)."""


def current_trial(sess: StudySession | SessionState, study: Study | StudyRef) -> TrialView | None:
    """The trial the session must answer now (None when the session is on a page stage)."""
    if sess.status != ACTIVE or sess.stage not in (SessionStage.SCREENING, SessionStage.TRIALS):
        return None
    public = package_view(study).public
    trial = public[sess.trial_order[sess.position]]
    nxt = sess.trial_order[sess.position + 1] if sess.position + 1 < len(sess.trial_order) else None
    next_clips = [*public[nxt]["references"], *public[nxt]["candidates"]] if nxt else []
    main_total = len(sess.trial_order)
    phases = [public[t]["phase"] for t in sess.trial_order]
    step = phases[: sess.position + 1].count(trial["phase"])
    return TrialView(trial, sess.position, main_total, next_clips, step, phases.count(trial["phase"]))
