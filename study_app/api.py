"""JSON API for the trial runner (and health checks for load balancers).

Errors are JSON with a message and a 4xx status; bad input never produces a 500.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from artifact_schemas import PROBLEM_REASONS
from study_app import answers, listening, stages
from study_app.db import autocommit_request, db
from study_app.models import SessionState, StudyRef
from study_app.packages import package_view
from study_app.participant import ApiRead, study_and_session

bp = Blueprint("api", __name__, url_prefix="/api")

EVENT_KINDS = frozenset(
    {
        "visibility",
        "audio_error",
        "network_retry",
        "resync",
        "client_error",
        "page_hidden",
        "page_visible",
        "clip_problem",
    }
)
# "Problem with the audio?" under a trial (issue 36): why, as the page's list says, and the
# participant's own words. Exported with the trial's answer (export.py, column problems) and,
# answered or not, in the problem_reports table (export --table problem_reports).
PROBLEM_TEXT_MAX = 500
# The optional comment under a trial (study.trial_comments), stored with its answer.
COMMENT_MAX = 500
# fullmatch, not match with "$": "$" also matches before a trailing newline.
_IDEM = re.compile(r"[A-Za-z0-9_-]{8,64}")
# Deeper than any body the runner sends; walking it stays far from the recursion limit.
_MAX_DEPTH = 16


class BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    return jsonify(error=exc.description or exc.name), exc.code or 500


@bp.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> ResponseReturnValue:
    return jsonify(error=str(exc)), 400


@bp.errorhandler(answers.AnswerError)
def _answer_error(exc: answers.AnswerError) -> ResponseReturnValue:
    # The trial runner shows the message to the participant: in the study's language.
    return jsonify(error=gettext(str(exc)), **exc.extra), exc.status


@bp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    """Liveness and database reachability, for load balancers and the deploy checks."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return {"status": "error", "database": type(exc).__name__}, 503
    return {"status": "ok", "database": db.engine.dialect.name}, 200


def _not_json(value: str) -> Any:
    raise ValueError(f"{value} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError("a number out of range")
    return value


def _check_values(value: Any, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise BadRequest(f"the JSON body is nested more than {_MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest("text must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:  # "\ud800": valid JSON, but no database stores it (a 500)
                raise BadRequest("text must not contain lone UTF-16 surrogates") from None
    if isinstance(value, dict):
        for k, v in value.items():
            _check_values(k, depth + 1)
            _check_values(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_values(v, depth + 1)


def json_body() -> Any:
    """The request's JSON body, or BadRequest (400) for anything the database cannot store.

    NaN, Infinity and numbers like 1e999 are not JSON (RFC 8259) and PostgreSQL's json type
    refuses them; nesting deep enough to exhaust Python's parser raised RecursionError; a
    NUL character cannot be stored in PostgreSQL text. Each used to be an HTTP 500.
    """
    try:
        data = json.loads(request.get_data(cache=True), parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"expected a JSON object ({type(exc).__name__}: {str(exc)[:80]})") from None
    _check_values(data)
    return data


def _read(slug: str, *, serve: bool = False, heard: bool = False) -> tuple[StudyRef, SessionState, ApiRead]:
    """The study and this browser's session (404 and 401 when either is missing), and the
    rest of what the one read returned (served, heard)."""
    read = study_and_session(slug, serve=serve, heard=heard)
    if read.study is None:
        raise answers.AnswerError(404, f"no study '{slug}'")
    if read.session is None:
        raise answers.AnswerError(401, "no session for this study in this browser; open the study link again")
    return read.study, read.session, read


def _session(slug: str) -> tuple[StudyRef, SessionState]:
    study, sess, _ = _read(slug)
    return study, sess


# A clip id that url_for would put into the path unchanged.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.-]+")
_PLACEHOLDER = "CLIP-ID-PLACEHOLDER"


class _ClipUrls:
    """Clips' ids and URLs for one session. Each URL is the session's own (``?s=``, which
    the media endpoint ignores): clips are cached for a year, and a browser that plays a
    clip an earlier session in it cached (a second preview) from that cache, without
    asking the server, would never have it count as heard in this session
    (listening.unheard_clips). Chromium asks again anyway (tested); the tag keeps any
    browser from relying on that. One url_for per trial fetch, not one per clip (six
    were a twentieth of the request: profile, issue 31)."""

    def __init__(self, sess: SessionState) -> None:
        self.tag = hashlib.sha256(sess.token.encode()).hexdigest()[:12]
        self.prefix, self.suffix = url_for("media.clip", clip_id=_PLACEHOLDER, s=self.tag).split(_PLACEHOLDER)

    def url(self, clip_id: str) -> str:
        if _PLAIN_ID.fullmatch(clip_id):
            return self.prefix + clip_id + self.suffix
        return url_for("media.clip", clip_id=clip_id, s=self.tag)

    def clip(self, clip_id: str) -> dict[str, str]:
        return {"id": clip_id, "url": self.url(clip_id)}


@bp.get("/s/<slug>/trial")
def trial(slug: str) -> ResponseReturnValue:
    """The current trial (public fields only), or the page the session must go to."""
    autocommit_request()  # one statement on PostgreSQL; a read, then at most one write on SQLite
    study, sess, read = _read(slug, serve=True)
    current = stages.current_trial(sess, study)
    if current is None:
        return jsonify(stage=sess.stage, redirect=url_for("participant.go", slug=slug))
    t = current.trial
    clips = _ClipUrls(sess)
    # Built before mark_served commits: reading the session after the commit reloaded it
    # (a second connection checkout, transaction and SELECT per trial).
    body = {
        "stage": sess.stage,
        "position": current.position,
        "total": current.total,
        "step": current.step,
        "steps": current.steps,
        # A retried headphone check plays the same trials again: the page must not show
        # them heard from the failed attempt (study.js keys what was heard by it).
        "attempt": sess.screening_attempt if t["phase"] == "screening" else 0,
        "trial": {
            "id": t["id"],
            "kind": t["kind"],
            "phase": t["phase"],
            "question": t["question"],
            "references": [clips.clip(c) for c in t["references"]],
            "candidates": [clips.clip(c) for c in t["candidates"]],
            "options": t["options"],
            "rating": t["rating"],
            "confidence": t["confidence"],
            "sliders": t.get("sliders"),  # packages built before slider trials have none
            "feedback": t["feedback"],
            "segments": t.get("segments", []),  # packages built before segments have none
        },
        "preload": [clips.url(c) for c in current.next_clips],
    }
    if not read.served:
        listening.mark_served(sess)
    return jsonify(body)


@bp.post("/s/<slug>/answer")
def answer(slug: str) -> ResponseReturnValue:
    """Record an answer. Repeating a request with the same idempotency_key returns the first result."""
    # Reads, then one statement that moves the session and stores the row (answers.submit_answer)
    autocommit_request()
    study, sess, read = _read(slug, heard=True)
    payload = _answer_payload(json_body())
    if payload["comment"] is not None and not package_view(study).manifest.trial_comments:
        raise BadRequest("comment: this study has no comment box (study.trial_comments is false)")
    return jsonify(answers.submit_answer(sess, study, payload, heard=read.heard))


def _answer_payload(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object")
    idem = data.get("idempotency_key")
    if not isinstance(idem, str) or not _IDEM.fullmatch(idem):
        raise BadRequest("idempotency_key must be 8-64 characters of A-Z a-z 0-9 _ -")
    if not isinstance(data.get("trial_id"), str):
        raise BadRequest("trial_id must be a string")
    rt = data.get("rt_ms")
    if isinstance(rt, bool) or not isinstance(rt, int | float) or not 0 <= rt < 86_400_000:
        raise BadRequest("rt_ms must be a number of milliseconds >= 0")
    plays = data.get("plays", {})
    if (
        not isinstance(plays, dict)
        or len(plays) > 64  # a trial's clips: a MUSHRA screen has up to 16 (trial_types/mushra.py)
        or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000
            for k, v in plays.items()
        )
    ):
        raise BadRequest("plays must map clip ids to play counts")
    answer = data.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise BadRequest("answer must be an option id")
    client_ts = data.get("client_ts")
    if client_ts is not None and (not isinstance(client_ts, str) or len(client_ts) > 40):
        raise BadRequest("client_ts must be an ISO 8601 string")
    comment = data.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
        raise BadRequest(f"comment must be text of at most {COMMENT_MAX} characters")
    return {
        "idempotency_key": idem,
        "trial_id": data["trial_id"],
        "rt_ms": float(rt),
        "plays": plays,
        "answer": answer,
        "rating": data.get("rating"),
        "confidence": data.get("confidence"),
        "sliders": data.get("sliders"),  # checked against the trial (answers._slider_values)
        "client_ts": client_ts,
        # An empty box is no comment.
        "comment": comment.strip() or None if comment is not None else None,
    }


def _problem(detail: dict[str, Any], study: StudyRef) -> dict[str, str]:
    """A problem report as stored: a trial of the study, a reason of the list, the text."""
    trial, reason, text = detail.get("trial"), detail.get("reason"), detail.get("text", "")
    if not isinstance(trial, str) or trial not in package_view(study).public:
        raise BadRequest("data.trial must be the id of one of the study's trials")
    if reason not in PROBLEM_REASONS:
        raise BadRequest(f"data.reason must be one of {sorted(PROBLEM_REASONS)}")
    if not isinstance(text, str) or len(text) > PROBLEM_TEXT_MAX:
        raise BadRequest(f"data.text must be text of at most {PROBLEM_TEXT_MAX} characters")
    return {"trial": trial, "reason": str(reason), "text": text.strip()}


@bp.post("/s/<slug>/event")
def event(slug: str) -> ResponseReturnValue:
    """Record a client-side event (tab hidden, audio failed, retries) for the researcher."""
    study, sess = _session(slug)
    data = json_body()
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or data["kind"] not in EVENT_KINDS:
        raise BadRequest(f"kind must be one of {sorted(EVENT_KINDS)}")
    detail = data.get("data", {})
    if not isinstance(detail, dict) or len(str(detail)) > 2000:
        raise BadRequest("data must be a small JSON object")
    if data["kind"] == "clip_problem":
        detail = _problem(detail, study)
    client_ts = data.get("client_ts") if isinstance(data.get("client_ts"), str) else None
    if (
        stages.recent_events(sess, EVENT_KINDS, seconds=60)
        >= current_app.config["EVENTS_PER_SESSION_PER_MINUTE"]
    ):
        return jsonify(error="too many events; they are not needed for the study to go on"), 429
    stages.record_event(study, sess, data["kind"], detail, client_ts[:40] if client_ts else None)
    return "", 204
