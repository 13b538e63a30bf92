"""Participant sessions: balanced list assignment, the trial sequence, idempotent answers.

The server owns all session state. Pages and the JSON API only ever ask "where
is this session?" and "record this answer"; a reload, the back button or a
retried request therefore cannot skip, repeat or duplicate a trial.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from artifact_schemas.order import list_items, session_order
from artifact_schemas.study import N_
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
    SessionState,
    Study,
    StudyRef,
    StudySession,
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


def _phase_of(study: Study | StudyRef, trial_key: str) -> str:
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


def _served_key(sess: StudySession | SessionState) -> str:
    return f"{sess.screening_attempt}:{sess.position}"


# A Core UPDATE of two columns: the ORM's flush of the same change cost more than the
# statement itself on every trial fetch (profile, issue 31).
_MARK_SERVED = (
    update(StudySession.__table__)
    .where(StudySession.__table__.c.id == bindparam("session_id"))
    .values(served_trial=bindparam("served_key"), served_at=bindparam("now"))
)


def mark_served(sess: SessionState) -> None:
    """Note when the current trial first went to the browser (a reload keeps the first time)."""
    key = _served_key(sess)
    if sess.served_trial != key:
        db.session.connection().execute(
            _MARK_SERVED, {"session_id": sess.id, "served_key": key, "now": utcnow()}
        )
        db.session.commit()


def merge_ranges(ranges: Iterable[Sequence[int]]) -> list[list[int]]:
    """Sorted, disjoint ``[start, stop)`` byte ranges covering exactly the bytes of
    ``ranges`` (overlapping and touching ones joined, empty ones dropped)."""
    merged: list[list[int]] = []
    for start, stop in sorted((int(r[0]), int(r[1])) for r in ranges if int(r[1]) > int(r[0])):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return merged


def _covers(served: list[list[int]], ranges: Iterable[tuple[int, int]]) -> bool:
    return merge_ranges([*served, *ranges]) == merge_ranges(served)


def _insert_clip_row(sess: StudySession, clip_id: str, size: int) -> None:
    """The (session, clip) row, unless a concurrent request inserted it first."""
    values = {"session_id": sess.id, "clip_id": clip_id, "size": size, "served": []}
    dialect = db.session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        from sqlalchemy.dialects import postgresql, sqlite

        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(ClipRequest).values(**values, first_at=utcnow())
        db.session.execute(stmt.on_conflict_do_nothing(index_elements=["session_id", "clip_id"]))
        return
    try:
        with db.session.begin_nested():
            db.session.add(ClipRequest(**values))
    except IntegrityError:
        pass


def record_clip_served(sess: StudySession, clip_id: str, size: int, ranges: list[tuple[int, int]]) -> None:
    """Add the byte ranges ``[start, stop)`` of ``clip_id`` (a file of ``size`` bytes) that
    the media endpoint served to ``sess``; the clip is heard once they cover the file.

    A browser fetches a clip in pieces, some in parallel (``Range: bytes=0-``, then the
    rest), so the row is read and written under a lock: SELECT ... FOR UPDATE on
    PostgreSQL (the row is inserted first if missing, ON CONFLICT DO NOTHING), and on
    SQLite the write lock every transaction takes (study_app.db). The served ranges stay
    merged, so their union is exact however the requests overlap; a request that adds no
    new bytes writes nothing.
    """
    ranges = [(max(0, a), min(size, b)) for a, b in ranges if min(size, b) > max(0, a)]
    if not ranges:
        return
    where = (ClipRequest.session_id == sess.id, ClipRequest.clip_id == clip_id)
    seen = db.session.execute(select(ClipRequest.size, ClipRequest.served).where(*where)).first()
    if seen is not None and seen.size == size and _covers(seen.served or [], ranges):
        return  # nothing new (coverage only grows, so a stale read cannot mislead here)
    if seen is None:
        _insert_clip_row(sess, clip_id, size)
    row = db.session.scalars(
        select(ClipRequest).where(*where).with_for_update().execution_options(populate_existing=True)
    ).one()
    if row.size is not None and row.size != size:  # the package's file changed: start over
        row.served, row.heard_at = [], None
    row.size = size  # a row from before 0008 has none (and counts as heard: see the migration)
    served = merge_ranges([*(row.served or []), *ranges])
    if served != row.served:
        row.served = served
    if row.heard_at is None and served == [[0, size]]:
        row.heard_at = utcnow()
    db.session.commit()


# Built once, as it runs with every answer (building a select and its cache key cost a
# third of running it: profile, issue 31).
_HEARD = select(ClipRequest.clip_id).where(
    ClipRequest.session_id == bindparam("session_id"),
    ClipRequest.clip_id.in_(bindparam("clips", expanding=True)),
    ClipRequest.heard_at.is_not(None),
)


def unheard_clips(
    sess: StudySession | SessionState, clips: set[str], heard: frozenset[str] | None = None
) -> set[str]:
    """Which of ``clips`` have not been served in full to ``sess`` (``heard``: the clips
    that were, when the request read them already)."""
    if not clips:
        return set()
    if heard is None:
        found = db.session.connection().execute(_HEARD, {"session_id": sess.id, "clips": sorted(clips)})
        heard = frozenset(found.scalars())
    return clips - heard


def listening_floor_s(study: Study | StudyRef, trial: dict[str, Any]) -> float:
    """The least time in which the trial's required clips can be heard, times LISTEN_FACTOR."""
    clips = package_view(study).manifest.clips
    required = {*trial["references"], *trial["candidates"]}
    return float(current_app.config["LISTEN_FACTOR"]) * sum(clips[c].duration_s for c in required)


LISTEN_FIRST = N_("Please listen to every clip to the end before answering.")


def _listening_evidence(
    sess: StudySession | SessionState,
    study: Study | StudyRef,
    trial: dict[str, Any],
    heard: frozenset[str] | None = None,
) -> tuple[Any, int]:
    """(served_at, required clips not served in full) for an answer now; AnswerError when
    the server cannot stand behind it.

    The browser's play counts are its own word: a bot sent plays = 1 for every clip and
    finished 156 s of audio in 1.3 s (issue 16.2). What the server knows is its own: when
    it sent the trial, and which bytes of each clip it served to this session
    (:func:`record_clip_served`). An answer is refused (425) until every required clip
    has been served in full, and until LISTEN_FACTOR x the clips' duration has passed
    since the trial was served. Both refusals say the same and carry no number: a bot
    that slept the ``wait_s`` the 425 announced, and fetched one byte of each clip or
    none, was paid (issue 31.3). A browser that plays every clip to the end has fetched
    every byte of it (from the server, or from its cache, filled by this session's
    earlier fetch: the clip URLs are per session, ``api._ClipUrls``). LISTEN_FACTOR = 0
    turns both checks off (a server only bots use); the count is still recorded.
    """
    served_at = sess.served_at if sess.served_trial == _served_key(sess) else None
    floor = listening_floor_s(study, trial)
    unheard = len(unheard_clips(sess, {*trial["references"], *trial["candidates"]}, heard))
    if floor > 0:
        if served_at is None:
            raise AnswerError(409, "this trial was not loaded yet; reload to continue")
        start = served_at if served_at.tzinfo else served_at.replace(tzinfo=utcnow().tzinfo)
        if unheard or (utcnow() - start).total_seconds() < floor:
            raise AnswerError(425, LISTEN_FIRST)
    return served_at, unheard


# The answer's two writes as Core statements (the ORM's unit of work, flush and identity
# map were a third of an answer's CPU: profile, issue 31). Built once.
_SESSION_T = StudySession.__table__
_RESPONSE_T = Response.__table__
_INSERT_RESPONSE = insert(_RESPONSE_T)
# The session moves on only from the state this request read: a concurrent answer that
# moved it first leaves this UPDATE matching no row (PostgreSQL re-checks the WHERE after
# waiting for that answer's row lock; SQLite's BEGIN IMMEDIATE serialises them).
_ADVANCE = (
    update(_SESSION_T)
    .where(
        _SESSION_T.c.id == bindparam("session_id"),
        _SESSION_T.c.position == bindparam("old_position"),
        _SESSION_T.c.screening_attempt == bindparam("old_attempt"),
        _SESSION_T.c.stage == bindparam("old_stage"),
        _SESSION_T.c.status == ACTIVE,
    )
    .values(position=bindparam("new_position"), last_seen_at=bindparam("now"))
)
_ROW_COLUMNS = (
    "session_id",
    "trial_id",
    "attempt",
    "position",
    "answer",
    "rating",
    "confidence",
    "slider_values",
    "correct",
    "rt_ms",
    "play_counts",
    "client_ts",
    "idempotency_key",
    "served_at",
    "clips_unfetched",
    "server_ts",
    "result",
)
# PostgreSQL: both writes in one statement, the row inserted only when the session moved.
# One statement is atomic on its own, so the answer runs in autocommit (api.answer): no
# BEGIN and COMMIT round trips (6 round trips per answer became 3: issue 31).
_MOVED = _ADVANCE.returning(_SESSION_T.c.id).cte("moved")
_ADVANCE_AND_INSERT = (
    insert(_RESPONSE_T)
    .from_select(
        [_RESPONSE_T.c[name] for name in _ROW_COLUMNS],
        # "r_": a parameter named like a study_session column joins the UPDATE's SET.
        select(
            *(bindparam(f"r_{name}", type_=_RESPONSE_T.c[name].type) for name in _ROW_COLUMNS)
        ).select_from(_MOVED),
    )
    .returning(_RESPONSE_T.c.id)
)
_RESULT_OF_KEY = select(_RESPONSE_T.c.result).where(
    _RESPONSE_T.c.session_id == bindparam("session_id"), _RESPONSE_T.c.idempotency_key == bindparam("idem")
)


def submit_answer(
    sess: SessionState, study: StudyRef, payload: dict[str, Any], heard: frozenset[str] | None = None
) -> dict[str, Any]:
    """Record one answer and move the session on; replay the result for a repeated key.
    ``heard``: the clips served in full to the session, when the request read them with it.

    Raises AnswerError (400 bad input, 409 not the current trial, 425 before its clips
    were all served in full or sooner than its audio could have been heard).

    An idempotency key counts within its session only: a key another session used is a
    new key here (it replayed that session's answer as this one's "duplicate": issue 31.7).

    Most answers only move the session one trial on: the response row and that move are
    two statements in one transaction. The answer that ends screening or the trials
    (scoring, the next stage, completion) goes through the ORM (:func:`_submit_final`).
    """
    idem = payload["idempotency_key"]
    current = current_trial(sess, study)
    if current is None or payload["trial_id"] != current.trial["id"]:
        # Most often a retry of a submit that was stored but whose reply got lost: the
        # session has moved on, so replay the stored result. Anything else is stale.
        previous = _result_with_key(sess.id, idem)
        if previous is not None:
            return {**previous, "duplicate": True}
        if current is None:
            raise AnswerError(409, "this session has no trial to answer now", stage=sess.stage)
        raise AnswerError(409, "this is not the current trial", current_trial=current.trial["id"])
    trial = current.trial
    given = _validate(trial, payload)
    served_at, unheard = _listening_evidence(sess, study, trial, heard)
    view = package_view(study)
    tkey = view.key.trials[trial["id"]]
    answer = given.answer
    correct = None if tkey.correct_option is None or answer is None else answer == tkey.correct_option
    row = {
        "session_id": sess.id,
        "trial_id": view.trial_rows[trial["id"]],
        "attempt": sess.screening_attempt if trial["phase"] == "screening" else 0,
        "position": current.position,
        "answer": answer,
        "rating": given.rating,
        "confidence": given.confidence,
        "slider_values": given.sliders,
        "correct": correct,
        "rt_ms": float(payload["rt_ms"]),
        "play_counts": payload["plays"],
        "client_ts": payload.get("client_ts"),
        "idempotency_key": idem,
        "served_at": served_at,
        "clips_unfetched": unheard,
    }
    position = sess.position + 1
    order = sess.trial_order
    if position >= len(order) or (
        trial["phase"] == "screening" and _phase_of(study, order[position]) != "screening"
    ):
        return _submit_final(sess, study, trial, row, idem)
    result: dict[str, Any] = {"accepted": True, "stage": sess.stage, "position": position}
    if trial.get("feedback"):
        result["feedback"] = {"correct": bool(correct)}
    now = utcnow()
    move = {
        "old_position": sess.position,
        "old_attempt": sess.screening_attempt,
        "old_stage": sess.stage,
        "new_position": position,
        "now": now,
    }
    row |= {"server_ts": now, "result": result}
    try:
        # The row and the session's move are one transaction (or one statement): when a
        # unique constraint refuses the row (a concurrent duplicate), the session does
        # not move on either, and a session that moved meanwhile gets no row.
        conn = db.session.connection()
        if conn.dialect.name == "postgresql":
            params = {**move, "session_id": sess.id, **{f"r_{k}": v for k, v in row.items()}}
            stored = conn.execute(_ADVANCE_AND_INSERT, params).first() is not None
        else:
            stored = conn.execute(_ADVANCE, {**move, "session_id": sess.id}).rowcount == 1
            if stored:
                conn.execute(_INSERT_RESPONSE, row)
        if stored:
            db.session.commit()
            return result
        db.session.rollback()
    except IntegrityError:
        db.session.rollback()
    return _concurrent(sess, idem)


def _concurrent(sess: StudySession | SessionState, idem: str) -> dict[str, Any]:
    """The answer when a concurrent request moved the session first: that request's result
    when it was this one's duplicate (same key), else 409."""
    winner = _result_with_key(sess.id, idem)
    if winner is not None:
        return {**winner, "duplicate": True}
    raise AnswerError(409, "this trial was answered concurrently; reload to continue") from None


def _submit_final(
    state: SessionState, study_ref: StudyRef, trial: dict[str, Any], row: dict[str, Any], idem: str
) -> dict[str, Any]:
    """The answer that ends screening or the trials, through the ORM (once or twice a session).

    The commit first ends the request's reads, which ran in autocommit on PostgreSQL
    (api.answer): what follows is one transaction, on a connection out of autocommit."""
    db.session.commit()
    sess = db.session.get(StudySession, state.id)
    study = db.session.get(Study, study_ref.id)
    assert sess is not None and study is not None
    if (sess.position, sess.screening_attempt, sess.stage, sess.status) != (
        state.position,
        state.screening_attempt,
        state.stage,
        state.status,
    ):
        db.session.rollback()
        return _concurrent(state, idem)
    response = Response(**row, result={})
    db.session.add(response)
    try:
        # The row and the session's move are one transaction, as above.
        # The result goes into the INSERT itself (set after a flush, it was an UPDATE more).
        sess.position += 1
        _after_answer(sess, study, trial["phase"])  # flushes the row when it counts screening answers
        result: dict[str, Any] = {"accepted": True, "stage": sess.stage, "position": sess.position}
        if trial.get("feedback"):
            result["feedback"] = {"correct": bool(row["correct"])}
        response.result = result
        touch(sess)
        db.session.commit()
    except IntegrityError:
        # A concurrent duplicate of this submit won the race: answer with its result.
        db.session.rollback()
        return _concurrent(state, idem)
    return result


def _result_with_key(session_id: int, idem: str) -> dict[str, Any] | None:
    """The result stored with the session's answer of idempotency key ``idem``, if any."""
    found = db.session.connection().execute(_RESULT_OF_KEY, {"session_id": session_id, "idem": idem}).first()
    return None if found is None else dict(found[0])


class _Given(NamedTuple):
    """An answer as checked against its trial: what each of the trial's questions got."""

    answer: str | None
    rating: float | None
    confidence: float | None
    sliders: dict[str, int] | None


def _validate(trial: dict[str, Any], payload: dict[str, Any]) -> _Given:
    required = {*trial["references"], *trial["candidates"]}
    plays = payload["plays"]
    unplayed = sorted(c for c in required if plays.get(c, 0) < 1)
    if unplayed:
        raise AnswerError(
            400, N_("Please listen to every clip to the end before answering."), unplayed=unplayed
        )
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
    return _Given(answer, rating, confidence, _slider_values(trial, payload.get("sliders")))


def _slider_values(trial: dict[str, Any], sliders: Any) -> dict[str, int] | None:
    """A mushra or slider trial's answer: one integer on its scale for each candidate clip,
    and nothing else (a missing slider was never moved: the page requires each one)."""
    scale = trial.get("sliders")
    if not scale:
        if sliders is not None:
            raise AnswerError(400, "this trial takes no sliders")
        return None
    if not isinstance(sliders, dict) or set(sliders) != set(trial["candidates"]):
        raise AnswerError(400, "sliders must give one value for each of the trial's candidate clips")
    return {clip: int(_in_scale(sliders[clip], scale, f"slider {clip}")) for clip in trial["candidates"]}


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
