"""Who takes part: starting and resuming a session, balanced list assignment, places
held and claimed, declines and the per-address limits.

The server owns all session state. Pages and the JSON API only ever ask "where is this
session?" (``stages``) and "record this answer" (``answers``); a reload, the back button
or a retried request therefore cannot skip, repeat or duplicate a trial.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update

from artifact_schemas.order import list_items, session_order
from study_app.db import db
from study_app.models import (
    ACTIVE,
    COMPLETED,
    FULL,
    SCREENED_OUT,
    Event,
    Participant,
    Response,
    SessionStage,
    Study,
    StudySession,
    TrialList,
    utcnow,
)
from study_app.packages import package_view
from study_app.stages import SETUP_STAGES, next_stage, touch


class StudyFull(Exception):
    """Every list has reached its target."""


class AlreadyTakingPart(Exception):
    """The Prolific id has a session here, and this request cannot prove it is theirs."""


class ListFull(Exception):
    """The session's list filled up while it was setting up (before its first trial)."""


class RateLimited(Exception):
    """Too many new sessions from one address."""


def pid_hash(study: Study, pid: str) -> str:
    return hashlib.sha256(f"{study.pid_salt}:{pid}".encode()).hexdigest()


def sessions_of(study: Study, pid: str | None) -> list[StudySession]:
    """The sessions of the participant with Prolific id ``pid``, newest first (resumed only
    by :func:`resumable_session`: a Prolific id is no secret)."""
    if not pid:
        return []
    return list(
        db.session.scalars(
            select(StudySession)
            .join(Participant, StudySession.participant_id == Participant.id)
            .where(Participant.study_id == study.id, Participant.pid_hash == pid_hash(study, pid))
            .order_by(StudySession.id.desc())
        )
    )


def mark_simulated(study: Study, pids: Iterable[str]) -> int:
    """Mark every session of these Prolific ids (``study-app simulate``'s bots) as
    simulated; return how many sessions that is. Only a command with the database can
    do this: nothing a browser sends makes a session simulated."""
    digests = sorted({pid_hash(study, pid) for pid in pids})
    marked = 0
    for start in range(0, len(digests), 500):  # a bounded IN list per statement
        bots = select(Participant.id).where(
            Participant.study_id == study.id, Participant.pid_hash.in_(digests[start : start + 500])
        )
        result = db.session.execute(
            update(StudySession).where(StudySession.participant_id.in_(bots)).values(simulated=True)
        )
        marked += int(getattr(result, "rowcount", 0) or 0)
    db.session.commit()
    return marked


def _has_answers(sess: StudySession) -> bool:
    return db.session.scalar(select(Response.id).where(Response.session_id == sess.id).limit(1)) is not None


def _holds_pid(sess: StudySession, prolific_session_id: str | None) -> bool:
    """Whether ``sess`` keeps a new arrival with its Prolific id (and another or no
    SESSION_ID) out.

    Prolific gives a participant PROLIFIC_PID, STUDY_ID and SESSION_ID together, and a
    SESSION_ID reaches only the participant; a Prolific id alone is no secret (issue 31.7:
    whoever consented first with someone else's id locked its owner out with a 409). So a
    session does not lock out an arrival that carries a SESSION_ID of its own while it is
    only a claim: not finished (completed, screened out) and no answer given, e.g. a
    stranger's session opened with the id and a made-up or no SESSION_ID. The two
    sessions then exist side by side, neither touched; payment follows the session that
    matches Prolific's submission (PID, SESSION_ID and STUDY_ID: study_app.prolific.pay). A session
    with answers or a finished one keeps the id: one participant, one attempt (issue 31.2).
    An arrival without a SESSION_ID has nothing of its own to show and is refused as before.
    """
    if not prolific_session_id or sess.status in (COMPLETED, SCREENED_OUT):
        return True
    return _has_answers(sess)


def resumable_session(study: Study, pid: str | None, prolific_session_id: str | None) -> StudySession | None:
    """The participant's session, when the request carries its Prolific SESSION_ID too.

    A Prolific id travels in URLs, screenshots and shared links; Prolific's SESSION_ID is
    made per submission and reaches only the participant (their study link). Resuming on
    the id alone let anyone who knew it answer in a stranger's session (issue 16.6).

    Raises AlreadyTakingPart when this request may not start a session: the Prolific id
    has a session that this request cannot claim and that holds the id
    (:func:`_holds_pid`), or the SESSION_ID already belongs to a session here. A SESSION_ID
    is one Prolific submission, so it opens one session whatever PROLIFIC_PID comes with
    it: a participant screened out (or finished) who comes back with the same SESSION_ID
    and a new, made-up or no PROLIFIC_PID gets no second attempt (issue 31.2).
    """
    mine = sessions_of(study, pid)
    if prolific_session_id:
        for sess in mine:
            if sess.prolific_session_id == prolific_session_id:
                return sess
        taken = db.session.scalar(
            select(StudySession.id)
            .where(StudySession.study_id == study.id, StudySession.prolific_session_id == prolific_session_id)
            .limit(1)
        )
        if taken is not None:
            raise AlreadyTakingPart()
    if any(_holds_pid(sess, prolific_session_id) for sess in mine):
        raise AlreadyTakingPart()
    return None


def ip_digest(ip: str) -> str:
    """The stored form of a client address: keyed by the instance's secret, since IPv4 has
    2^32 addresses and an unkeyed digest is reversed in minutes by whoever reads the
    database (issue 16.11)."""
    return hmac.new(str(current_app.config["SECRET_KEY"]).encode(), ip.encode(), hashlib.sha256).hexdigest()


def record_decline(study: Study, pid: str | None, ip: str) -> None:
    """Store a decline, at most SESSIONS_PER_IP_PER_MINUTE per address a minute, as for new
    sessions (RateLimited beyond): 300 declines in 2.9 s from one address were all stored
    and counted on the dashboard (issue 31.7). Counted under the lists' lock, as sessions
    are, so concurrent declines cannot all slip under the limit."""
    digest = ip_digest(ip)
    _lock_lists(study)
    window = utcnow() - timedelta(seconds=60)
    recent = db.session.scalar(
        select(func.count(Event.id)).where(
            Event.study_id == study.id,
            Event.kind == "decline",
            Event.server_ts >= window,
            Event.data["ip"].as_string() == digest,
        )
    )
    if (recent or 0) >= current_app.config["SESSIONS_PER_IP_PER_MINUTE"]:
        db.session.rollback()
        raise RateLimited()
    data = {"participant": pid_hash(study, pid)} if pid else {}
    db.session.add(Event(study_id=study.id, session_id=None, kind="decline", data={**data, "ip": digest}))
    db.session.commit()


def _holding_place(study: Study) -> Any:
    """SQL condition: sessions that hold a place of their list (completed, or in the trials
    and seen within SESSION_TIMEOUT_S). A place is held from the first trial on: before,
    eight consent-only sessions filled an eight-place study for an hour (issue 16.5)."""
    fresh = StudySession.last_seen_at >= utcnow() - timedelta(seconds=current_app.config["SESSION_TIMEOUT_S"])
    working = (StudySession.status == ACTIVE) & fresh & StudySession.stage.not_in(SETUP_STAGES)
    return (StudySession.status == COMPLETED) | working


def _setting_up(study: Study) -> Any:
    """SQL condition: sessions before their first trial that started, and were last seen,
    within SETUP_TIMEOUT_S.
    They are counted when a list is chosen (so concurrent arrivals spread and do not
    overfill) but only for that short while after consent. From the last time a session
    was *seen*, one GET per place every 30 s kept a study "full" for ever (issue 31.7);
    a slow participant still gets a place at the first trial if one is left."""
    since = utcnow() - timedelta(seconds=current_app.config["SETUP_TIMEOUT_S"])
    fresh = (StudySession.started_at >= since) & (StudySession.last_seen_at >= since)
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
    screen: str = "",
) -> StudySession:
    """Create a session on the least-filled list that is below its target, in one transaction.

    Concurrency: on PostgreSQL the study's list rows are locked (SELECT ... FOR
    UPDATE) before counting, so concurrent arrivals queue and each sees the
    previous one's session; on SQLite every transaction starts with BEGIN
    IMMEDIATE (study_app.db), which serialises writers the same way.

    Idempotent for a Prolific id: when the reply to a consent POST is lost and the
    browser sends it again, the participant's existing session is returned (checked
    under the same lock, so two concurrent repeats cannot both create one) if the POST
    carries the session's Prolific SESSION_ID; otherwise AlreadyTakingPart when the id or
    the SESSION_ID is taken (:func:`resumable_session`, under the same lock: two arrivals
    with one SESSION_ID cannot both start).

    ``screen``: the browser's screen size, as the consent form sent it (32 characters kept);
    stored with the session in its first write (a second commit was three more round trips).
    """
    digest_of_ip = ip_digest(ip)
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
        chosen = _assign_list(study, lists, digest_of_ip)
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
        ip_hash=digest_of_ip,
        preview=preview_list is not None,
        screen=screen[:32],
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


def _assign_list(study: Study, lists: list[TrialList], digest: str) -> TrialList:
    window = utcnow() - timedelta(seconds=60)
    recent = db.session.scalar(
        select(func.count(StudySession.id)).where(
            StudySession.ip_hash == digest, StudySession.started_at >= window
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
