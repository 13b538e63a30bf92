"""Participant sessions: balanced list assignment, the trial sequence, idempotent answers.

The server owns all session state. Pages and the JSON API only ever ask "where
is this session?" and "record this answer"; a reload, the back button or a
retried request therefore cannot skip, repeat or duplicate a trial.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from artifact_schemas.order import list_items, session_order
from study_app.db import db
from study_app.models import (
    ACTIVE,
    COMPLETED,
    FULL,
    SCREENED_OUT,
    ClipRequest,
    Event,
    Participant,
    Response,
    SessionStage,
    Study,
    StudySession,
    Trial,
    TrialList,
    utcnow,
)
from study_app.packages import package_view


class StudyFull(Exception):
    """Every list has reached its target."""


class AlreadyTakingPart(Exception):
    """The Prolific id has a session here, and this request cannot prove it is theirs."""


class ListFull(Exception):
    """The session's list filled up while it was setting up (before its first trial)."""


class RateLimited(Exception):
    """Too many new sessions from one address."""


class AnswerError(Exception):
    """A submit that cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def pid_hash(study: Study, pid: str) -> str:
    return hashlib.sha256(f"{study.pid_salt}:{pid}".encode()).hexdigest()


def find_session(study: Study, pid: str | None) -> StudySession | None:
    """The latest session of the participant with Prolific id ``pid`` (resumed only by
    :func:`resumable_session`: a Prolific id is no secret)."""
    if not pid:
        return None
    return db.session.scalar(
        select(StudySession)
        .join(Participant, StudySession.participant_id == Participant.id)
        .where(Participant.study_id == study.id, Participant.pid_hash == pid_hash(study, pid))
        .order_by(StudySession.id.desc())
    )


def resumable_session(study: Study, pid: str | None, prolific_session_id: str | None) -> StudySession | None:
    """The participant's session, when the request carries its Prolific SESSION_ID too.

    A Prolific id travels in URLs, screenshots and shared links; Prolific's SESSION_ID is
    made per submission and reaches only the participant (their study link). Resuming on
    the id alone let anyone who knew it answer in a stranger's session (issue 16.6).
    Raises AlreadyTakingPart when the id has a session that this request cannot claim.
    """
    existing = find_session(study, pid)
    if existing is None:
        return None
    if prolific_session_id and existing.prolific_session_id == prolific_session_id:
        return existing
    raise AlreadyTakingPart()


# Stages before the first trial: a session there has not started the study's real work.
SETUP_STAGES = (SessionStage.VOLUME, SessionStage.SCREENING, SessionStage.INSTRUCTIONS)


def _holding_place(study: Study) -> Any:
    """SQL condition: sessions that hold a place of their list (completed, or in the trials
    and seen within SESSION_TIMEOUT_S). A place is held from the first trial on: before,
    eight consent-only sessions filled an eight-place study for an hour (issue 16.5)."""
    fresh = StudySession.last_seen_at >= utcnow() - timedelta(seconds=current_app.config["SESSION_TIMEOUT_S"])
    working = (StudySession.status == ACTIVE) & fresh & StudySession.stage.not_in(SETUP_STAGES)
    return (StudySession.status == COMPLETED) | working


def _setting_up(study: Study) -> Any:
    """SQL condition: sessions before their first trial that moved within SETUP_TIMEOUT_S.
    They are counted when a list is chosen (so concurrent arrivals spread and do not
    overfill) but only for that short while: one that stops moving stops counting."""
    fresh = StudySession.last_seen_at >= utcnow() - timedelta(seconds=current_app.config["SETUP_TIMEOUT_S"])
    return (StudySession.status == ACTIVE) & fresh & StudySession.stage.in_(SETUP_STAGES)


def _count_by_list(study: Study, condition: Any) -> dict[int, int]:
    rows = db.session.execute(
        select(StudySession.list_id, func.count(StudySession.id))
        .where(StudySession.study_id == study.id, ~StudySession.preview, condition)
        .group_by(StudySession.list_id)
    ).all()
    return {list_id: n for list_id, n in rows}


def list_fill(study: Study) -> dict[int, int]:
    """Sessions counted against each list's target when a newcomer is assigned: those
    holding a place plus those setting up (previews excluded)."""
    return _count_by_list(study, _holding_place(study) | _setting_up(study))


def places_held(study: Study) -> dict[int, int]:
    """Places held per list id: completed sessions and sessions in their trials."""
    return _count_by_list(study, _holding_place(study))


def start_session(
    study: Study,
    *,
    pid: str | None,
    prolific_study_id: str | None,
    prolific_session_id: str | None,
    user_agent: str,
    ip: str,
    preview_list: TrialList | None = None,
) -> StudySession:
    """Create a session on the least-filled list that is below its target, in one transaction.

    Concurrency: on PostgreSQL the study's list rows are locked (SELECT ... FOR
    UPDATE) before counting, so concurrent arrivals queue and each sees the
    previous one's session; on SQLite every transaction starts with BEGIN
    IMMEDIATE (study_app.db), which serialises writers the same way.

    Idempotent for a Prolific id: when the reply to a consent POST is lost and the
    browser sends it again, the participant's existing session is returned (checked
    under the same lock, so two concurrent repeats cannot both create one) if the POST
    carries the session's Prolific SESSION_ID; otherwise AlreadyTakingPart.
    """
    cfg = current_app.config
    # Keyed by the instance's secret: IPv4 has 2^32 addresses, so an unkeyed digest is
    # reversed in minutes by whoever reads the database (issue 16.11).
    ip_digest = hmac.new(str(cfg["SECRET_KEY"]).encode(), ip.encode(), hashlib.sha256).hexdigest()
    if preview_list is None:
        lists = _lock_lists(study)
        try:
            existing = resumable_session(study, pid, prolific_session_id)
        except AlreadyTakingPart:
            db.session.rollback()
            raise
        if existing is not None:
            db.session.commit()
            return existing
        chosen = _assign_list(study, lists, ip_digest)
    else:
        # A researcher's preview walks through a chosen list, and nothing counts it.
        chosen = preview_list

    if pid:
        digest = pid_hash(study, pid)
        raw = pid if study.store_raw_pid else None
    else:
        digest, raw = hashlib.sha256(secrets.token_bytes(32)).hexdigest(), None
    participant = db.session.scalar(
        select(Participant).where(Participant.study_id == study.id, Participant.pid_hash == digest)
    )
    if participant is None:
        participant = Participant(study_id=study.id, pid_hash=digest, raw_pid=raw)
        db.session.add(participant)
        db.session.flush()

    view = package_view(study)
    seed = secrets.randbits(62)
    order = session_order(list_items(chosen.trial_ids, view.manifest, view.key), view.manifest.order, seed)
    first_stage = next_stage(study, None)
    sess = StudySession(
        token=secrets.token_urlsafe(24),
        study_id=study.id,
        list_id=chosen.id,
        participant_id=participant.id,
        shuffle_seed=seed,
        trial_order=order,
        stage=first_stage,
        prolific_study_id=prolific_study_id,
        prolific_session_id=prolific_session_id,
        user_agent=user_agent[:500],
        ip_hash=ip_digest,
        preview=preview_list is not None,
    )
    db.session.add(sess)
    db.session.flush()
    db.session.add(Event(session_id=sess.id, study_id=study.id, kind="consent", data={}))
    db.session.commit()
    return sess


def _lock_lists(study: Study) -> list[TrialList]:
    return list(
        db.session.scalars(
            select(TrialList)
            .where(TrialList.study_id == study.id)
            .order_by(TrialList.position)
            .with_for_update()
        )
    )


def _assign_list(study: Study, lists: list[TrialList], ip_digest: str) -> TrialList:
    window = utcnow() - timedelta(seconds=60)
    recent = db.session.scalar(
        select(func.count(StudySession.id)).where(
            StudySession.ip_hash == ip_digest, StudySession.started_at >= window
        )
    )
    if (recent or 0) >= current_app.config["SESSIONS_PER_IP_PER_MINUTE"]:
        db.session.rollback()
        raise RateLimited()
    fill = list_fill(study)
    open_lists = [lst for lst in lists if fill.get(lst.id, 0) < lst.target]
    if not open_lists:
        db.session.rollback()
        raise StudyFull()
    return min(open_lists, key=lambda lst: (fill.get(lst.id, 0), lst.position))


def next_stage(study: Study, stage: SessionStage | None) -> SessionStage:
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
    study: Study, sess: StudySession | None, kind: str, data: dict[str, Any], client_ts: str | None = None
) -> None:
    db.session.add(
        Event(
            study_id=study.id, session_id=sess.id if sess else None, kind=kind, data=data, client_ts=client_ts
        )
    )
    db.session.commit()


def recent_events(sess: StudySession, kinds: frozenset[str], seconds: float) -> int:
    """Events of ``kinds`` that ``sess`` recorded in the last ``seconds`` (the event rate limit)."""
    since = utcnow() - timedelta(seconds=seconds)
    query = select(func.count(Event.id)).where(
        Event.session_id == sess.id, Event.kind.in_(kinds), Event.server_ts >= since
    )
    return db.session.scalar(query) or 0


def touch(sess: StudySession) -> None:
    sess.last_seen_at = utcnow()


def advance_stage(sess: StudySession, study: Study, from_stage: str) -> None:
    """Move past a page stage (volume, instructions) when the session is on it."""
    if sess.stage != from_stage or sess.status != ACTIVE:
        return
    if from_stage == SessionStage.VOLUME:
        sess.stage = next_stage(study, SessionStage.VOLUME)
    elif from_stage == SessionStage.INSTRUCTIONS:
        if not sess.preview:
            _claim_place(sess, study)
        # The position is already past screening: it ends on the last screening answer.
        sess.stage = SessionStage.TRIALS
        if sess.position >= len(sess.trial_order):
            sess.stage = next_stage(study, SessionStage.TRIALS)
    touch(sess)
    db.session.commit()


def _claim_place(sess: StudySession, study: Study) -> None:
    """Take a place of the session's list for the trials; ListFull when none is left.

    Under the same list lock as assignment, so two sessions cannot take the last place.
    """
    lists = {lst.id: lst for lst in _lock_lists(study)}
    if places_held(study).get(sess.list_id, 0) >= lists[sess.list_id].target:
        sess.status, sess.stage, sess.finished_at = FULL, SessionStage.DONE, utcnow()
        db.session.add(Event(session_id=sess.id, study_id=study.id, kind="list_full", data={}))
        db.session.commit()
        raise ListFull()


def _phase_of(study: Study, trial_key: str) -> str:
    return package_view(study).trial_types[trial_key]


def finish_questionnaire(sess: StudySession, answers: dict[str, Any]) -> None:
    if sess.stage != SessionStage.QUESTIONNAIRE or sess.status != ACTIVE:
        return
    sess.questionnaire = answers
    _complete(sess)
    db.session.commit()


def _complete(sess: StudySession) -> None:
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


def current_trial(sess: StudySession, study: Study) -> TrialView | None:
    """The trial the session must answer now (None when the session is on a page stage)."""
    if sess.status != ACTIVE or sess.stage not in (SessionStage.SCREENING, SessionStage.TRIALS):
        return None
    public = package_view(study).public
    trial = public[sess.trial_order[sess.position]]
    nxt = sess.trial_order[sess.position + 1] if sess.position + 1 < len(sess.trial_order) else None
    next_clips = [*public[nxt]["references"], *public[nxt]["candidates"]] if nxt else []
    main_total = len(sess.trial_order)
    return TrialView(trial, sess.position, main_total, next_clips)


def _served_key(sess: StudySession) -> str:
    return f"{sess.screening_attempt}:{sess.position}"


def mark_served(sess: StudySession) -> None:
    """Note when the current trial first went to the browser (a reload keeps the first time)."""
    if sess.served_trial != _served_key(sess):
        sess.served_trial, sess.served_at = _served_key(sess), utcnow()
        db.session.commit()


def record_clip_request(sess: StudySession, clip_id: str) -> None:
    """Remember the first time ``sess`` fetched ``clip_id`` (later fetches change nothing)."""
    exists = db.session.scalar(
        select(ClipRequest.id).where(ClipRequest.session_id == sess.id, ClipRequest.clip_id == clip_id)
    )
    if exists is not None:
        return
    db.session.add(ClipRequest(session_id=sess.id, clip_id=clip_id))
    try:
        db.session.commit()
    except IntegrityError:  # a parallel Range request of the same clip won
        db.session.rollback()


def listening_floor_s(study: Study, trial: dict[str, Any]) -> float:
    """The least time in which the trial's required clips can be heard, times LISTEN_FACTOR."""
    clips = package_view(study).manifest.clips
    required = {*trial["references"], *trial["candidates"]}
    return float(current_app.config["LISTEN_FACTOR"]) * sum(clips[c].duration_s for c in required)


def _listening_evidence(sess: StudySession, study: Study, trial: dict[str, Any]) -> tuple[Any, int]:
    """(served_at, clips never fetched) for an answer now; AnswerError when it comes too soon.

    The browser's play counts are its own word: a bot sent plays = 1 for every clip and
    finished 156 s of audio in 1.3 s (issue 16.2). The server knows when it sent the trial,
    so it refuses an answer sooner than the clips last; which clips the session never
    fetched is recorded, not refused (a clip can come from the browser's cache).
    """
    served_at = sess.served_at if sess.served_trial == _served_key(sess) else None
    floor = listening_floor_s(study, trial)
    if floor > 0:
        if served_at is None:
            raise AnswerError(409, "this trial was not loaded yet; reload to continue")
        start = served_at if served_at.tzinfo else served_at.replace(tzinfo=utcnow().tzinfo)
        elapsed = (utcnow() - start).total_seconds()
        if elapsed < floor:
            raise AnswerError(
                425,
                "Please listen to every clip to the end before answering.",
                wait_s=round(floor - elapsed, 1),
            )
    required = {*trial["references"], *trial["candidates"]}
    fetched = set(
        db.session.scalars(
            select(ClipRequest.clip_id).where(
                ClipRequest.session_id == sess.id, ClipRequest.clip_id.in_(required)
            )
        )
    )
    return served_at, len(required - fetched)


def submit_answer(sess: StudySession, study: Study, payload: dict[str, Any]) -> dict[str, Any]:
    """Record one answer and move the session on; replay the result for a repeated key.

    Raises AnswerError (400 bad input, 409 not the current trial, 425 sooner than its
    audio could have been heard).
    """
    idem = payload["idempotency_key"]
    current = current_trial(sess, study)
    if current is None or payload["trial_id"] != current.trial["id"]:
        # Most often a retry of a submit that was stored but whose reply got lost: the
        # session has moved on, so replay the stored result. Anything else is stale.
        previous = db.session.scalar(select(Response).where(Response.idempotency_key == idem))
        if previous is not None and previous.session_id == sess.id:
            return {**previous.result, "duplicate": True}
        if previous is not None:
            raise AnswerError(409, "idempotency_key was already used by another session")
        if current is None:
            raise AnswerError(409, "this session has no trial to answer now", stage=sess.stage)
        raise AnswerError(409, "this is not the current trial", current_trial=current.trial["id"])
    trial = current.trial
    answer, rating, confidence = _validate(trial, payload)
    served_at, unfetched = _listening_evidence(sess, study, trial)
    view = package_view(study)
    tkey = view.key.trials[trial["id"]]
    correct = None if tkey.correct_option is None or answer is None else answer == tkey.correct_option
    trial_row = db.session.scalar(
        select(Trial.id).where(Trial.study_id == study.id, Trial.trial_key == trial["id"])
    )
    response = Response(
        session_id=sess.id,
        trial_id=trial_row,
        attempt=sess.screening_attempt if trial["phase"] == "screening" else 0,
        position=current.position,
        answer=answer,
        rating=rating,
        confidence=confidence,
        correct=correct,
        rt_ms=float(payload["rt_ms"]),
        play_counts=payload["plays"],
        client_ts=payload.get("client_ts"),
        idempotency_key=idem,
        served_at=served_at,
        clips_unfetched=unfetched,
        result={},
    )
    db.session.add(response)
    try:
        db.session.flush()  # the unique constraints decide here, before the session moves on
        sess.position += 1
        _after_answer(sess, study, trial["phase"])
        result: dict[str, Any] = {"accepted": True, "stage": sess.stage, "position": sess.position}
        if trial.get("feedback"):
            result["feedback"] = {"correct": bool(correct)}
        response.result = result
        touch(sess)
        db.session.commit()
    except IntegrityError:
        # A concurrent duplicate of this submit won the race: answer with its result.
        db.session.rollback()
        winner = db.session.scalar(select(Response).where(Response.idempotency_key == idem))
        if winner is not None:
            return {**winner.result, "duplicate": True}
        raise AnswerError(409, "this trial was answered concurrently; reload to continue") from None
    return result


def _validate(
    trial: dict[str, Any], payload: dict[str, Any]
) -> tuple[str | None, float | None, float | None]:
    required = {*trial["references"], *trial["candidates"]}
    plays = payload["plays"]
    unplayed = sorted(c for c in required if plays.get(c, 0) < 1)
    if unplayed:
        raise AnswerError(400, "every clip must be played to the end before answering", unplayed=unplayed)
    answer = payload.get("answer")
    rating = payload.get("rating")
    confidence = payload.get("confidence")
    if trial["options"]:
        if answer not in {o["id"] for o in trial["options"]}:
            raise AnswerError(400, "answer must be one of the trial's option ids")
    elif answer is not None:
        raise AnswerError(400, "this trial takes a rating, not an answer")
    if trial["rating"]:
        rating = _in_scale(rating, trial["rating"], "rating")
    elif rating is not None:
        raise AnswerError(400, "this trial takes no rating")
    if trial.get("confidence"):
        confidence = _in_scale(confidence, trial["confidence"], "confidence")
    elif confidence is not None:
        raise AnswerError(400, "this trial takes no confidence rating")
    return answer, rating, confidence


def _in_scale(value: Any, scale: dict[str, Any], name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int) or not scale["min"] <= value <= scale["max"]:
        raise AnswerError(400, f"{name} must be an integer from {scale['min']} to {scale['max']}")
    return float(value)


def _after_answer(sess: StudySession, study: Study, phase: str) -> None:
    order = sess.trial_order
    if phase == "screening":
        if sess.position < len(order) and _phase_of(study, order[sess.position]) == "screening":
            return
        _score_screening(sess, study)
    elif sess.position >= len(order):
        sess.stage = next_stage(study, SessionStage.TRIALS)
        if sess.stage == SessionStage.DONE:
            _complete(sess)


def _score_screening(sess: StudySession, study: Study) -> None:
    """After the last screening trial: pass, retry (when attempts remain) or screen out."""
    spec = package_view(study).manifest.screening
    assert spec is not None
    n_correct = (
        db.session.scalar(
            select(func.count(Response.id)).where(
                Response.session_id == sess.id,
                Response.attempt == sess.screening_attempt,
                Response.correct.is_(True),
            )
        )
        or 0
    )
    passed = n_correct >= spec.pass_threshold
    db.session.add(
        Event(
            session_id=sess.id,
            study_id=study.id,
            kind="screening_pass" if passed else "screening_fail",
            data={"correct": n_correct, "threshold": spec.pass_threshold, "attempt": sess.screening_attempt},
        )
    )
    if passed:
        sess.stage = next_stage(study, SessionStage.SCREENING)
    elif sess.screening_attempt + 1 < spec.max_attempts:
        sess.screening_attempt += 1
        sess.position = 0
    else:
        sess.status = SCREENED_OUT
        sess.stage = SessionStage.DONE
        sess.finished_at = utcnow()
