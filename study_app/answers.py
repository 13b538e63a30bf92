"""Recording an answer: checked against its trial and the listening evidence, stored
once per idempotency key in one statement that also moves the session on, and the
screening scored when its last trial is answered."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from artifact_schemas.study import N_
from study_app.db import db
from study_app.listening import listening_floor_s, served_key, unheard_clips
from study_app.models import (
    ACTIVE,
    SCREENED_OUT,
    Event,
    Response,
    SessionStage,
    SessionState,
    Study,
    StudyRef,
    StudySession,
    utcnow,
)
from study_app.packages import package_view
from study_app.stages import complete_session, current_trial, next_stage, phase_of, touch


class AnswerError(Exception):
    """A submit that cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


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
    served_at = sess.served_at if sess.served_trial == served_key(sess) else None
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
    "comment",
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
        "comment": payload.get("comment"),
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
        trial["phase"] == "screening" and phase_of(study, order[position]) != "screening"
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
        if sess.position < len(order) and phase_of(study, order[sess.position]) == "screening":
            return
        _score_screening(sess, study)
    elif sess.position >= len(order):
        sess.stage = next_stage(study, SessionStage.TRIALS)
        if sess.stage == SessionStage.DONE:
            complete_session(sess)


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
