"""Pages participants see: entry and consent, volume set-up, instructions, the trial
runner, the questionnaire and the completion page. The session's stage (server-side)
decides which page ``/s/<slug>/go`` shows, so reload and back always land right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import gettext
from sqlalchemy import String, bindparam, cast, func, literal_column, or_, select, update

from artifact_schemas import StudyManifest
from artifact_schemas.study import N_
from study_app import sessions, stages
from study_app.db import db
from study_app.models import (
    ACTIVE,
    COMPLETED,
    DECLINED,
    SCREENED_OUT,
    ClipRequest,
    SessionStage,
    SessionState,
    Study,
    StudyRef,
    StudySession,
    utcnow,
)
from study_app.packages import package_view
from study_app.prolific.client import is_prolific_id

bp = Blueprint("participant", __name__)

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?cc={code}"
_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
# The query string of the study URL given to Prolific, which fills in each {{%NAME%}}.
PROLIFIC_PLACEHOLDERS = "&".join(f"{p}={{{{%{p}%}}}}" for p in _PARAMS)


@bp.get("/")
def index() -> str:
    """Landing page: the open studies (participants normally arrive via a link). Drafts and
    paused studies stay unlisted: their titles are the researcher's business (issue 16.11)."""
    studies = db.session.scalars(select(Study).where(Study.status == "open").order_by(Study.slug)).all()
    return render_template("index.html", studies=studies)


def get_study(slug: str) -> Study:
    study = db.session.scalar(select(Study).where(Study.slug == slug))
    if study is None:
        abort(404)
    return study


def session_for(study: Study) -> StudySession | None:
    """The session whose token this browser holds for ``study``."""
    token = session.get("studies", {}).get(study.slug)
    if not token:
        return None
    return db.session.scalar(
        select(StudySession).where(StudySession.token == token, StudySession.study_id == study.id)
    )


def _names(row_type: type) -> list[str]:
    return [f.name for f in fields(row_type)]


# Built once: building a select and its cache key cost a third of running it (profile, issue 31).
# Core, not ORM: the rows become StudyRef and SessionState (models), without the ORM's load.
_STUDY_COLS = tuple(Study.__table__.c[name] for name in _names(StudyRef))
_SESSION_COLS = tuple(StudySession.__table__.c[name] for name in _names(SessionState))
_STUDY_AND_SESSION = (
    select(*_STUDY_COLS, *_SESSION_COLS)
    .select_from(Study.__table__.join(StudySession.__table__, StudySession.__table__.c.study_id == Study.id))
    .where(
        Study.__table__.c.slug == bindparam("slug"),
        StudySession.__table__.c.token == bindparam("session_token"),
    )
)
_STUDY_ONLY = select(*_STUDY_COLS).where(Study.__table__.c.slug == bindparam("slug"))

# PostgreSQL folds each API request's other statement into this read (issue 31: a
# statement is a round trip and a backend's parse and plan; two per request were about
# a fifth of its CPU). The trial fetch marks the current trial served in a data-modifying
# WITH, which runs whether or not the SELECT reads it, and sees the same snapshot: the
# session row returned is the one before the mark. The condition is current_trial's (an
# active session on a trial stage) and the key is listening.served_key's, so a reload
# keeps the first time.
_SESSION_T = StudySession.__table__
_CLIPS_T = ClipRequest.__table__
# No parameter here is named like a study_session column: SQLAlchemy adds a parameter
# named "token" to the UPDATE's SET (as token = a new anonymous parameter, with no value).
_SERVED_KEY = (
    cast(_SESSION_T.c.screening_attempt, String) + literal_column("':'") + cast(_SESSION_T.c.position, String)
)
_SERVED = (
    update(_SESSION_T)
    .where(
        _SESSION_T.c.token == bindparam("session_token"),
        _SESSION_T.c.study_id
        == select(Study.__table__.c.id).where(Study.__table__.c.slug == bindparam("slug")).scalar_subquery(),
        _SESSION_T.c.status == bindparam("active"),
        # Not IN with an expanding parameter: that one is rendered anew at every execution.
        or_(_SESSION_T.c.stage == bindparam("screening"), _SESSION_T.c.stage == bindparam("trials")),
        _SESSION_T.c.served_trial.is_distinct_from(_SERVED_KEY),
    )
    .values(served_trial=_SERVED_KEY, served_at=bindparam("now"))
    .returning(_SESSION_T.c.id)
    .cte("served")
)
_STUDY_AND_SESSION_SERVED = _STUDY_AND_SESSION.add_cte(_SERVED)
_SERVED_PARAMS = {"active": ACTIVE, "screening": SessionStage.SCREENING, "trials": SessionStage.TRIALS}
# The answer's read carries the clips served in full to the session (listening.unheard_clips).
_HEARD_NOW = (
    select(func.array_agg(_CLIPS_T.c.clip_id))
    .where(_CLIPS_T.c.session_id == _SESSION_T.c.id, _CLIPS_T.c.heard_at.is_not(None))
    .scalar_subquery()
)
_STUDY_AND_SESSION_HEARD = _STUDY_AND_SESSION.add_columns(_HEARD_NOW)


@dataclass(frozen=True)
class ApiRead:
    """What an API request read in its first statement."""

    study: StudyRef | None
    session: SessionState | None
    served: bool = False
    """The current trial is marked served (PostgreSQL's trial fetch: no listening.mark_served)."""
    heard: frozenset[str] | None = None
    """The clips served in full to the session, when read with it (the answer, PostgreSQL)."""


def study_and_session(slug: str, *, serve: bool = False, heard: bool = False) -> ApiRead:
    """The study and this browser's session in it, in one query (the API's hot path).

    On PostgreSQL ``serve`` marks the current trial served in the same statement, and
    ``heard`` reads the clips served in full to the session with it."""
    token = session.get("studies", {}).get(slug)
    conn = db.session.connection()
    if token:
        pg = conn.dialect.name == "postgresql"
        serve, heard = serve and pg, heard and pg and not serve  # folded into the read on PostgreSQL only
        params = {"slug": slug, "session_token": token}
        if serve:
            statement, params = _STUDY_AND_SESSION_SERVED, {**params, "now": utcnow(), **_SERVED_PARAMS}
        else:
            statement = _STUDY_AND_SESSION_HEARD if heard else _STUDY_AND_SESSION
        row = conn.execute(statement, params).first()
        if row is not None:
            n, m = len(_STUDY_COLS), len(_STUDY_COLS) + len(_SESSION_COLS)
            clips = frozenset(row[m] or ()) if heard else None
            return ApiRead(StudyRef(*row[:n]), SessionState(*row[n:m]), served=serve, heard=clips)
    return ApiRead(study_ref(slug), None)


def study_ref(slug: str) -> StudyRef | None:
    """Study ``slug``'s columns the participant pages read (None: no such study)."""
    found = db.session.connection().execute(_STUDY_ONLY, {"slug": slug}).first()
    return StudyRef(*found) if found is not None else None


def remember(study: Study, sess: StudySession) -> None:
    studies = dict(session.get("studies", {}))
    studies[study.slug] = sess.token
    session["studies"] = studies
    session.permanent = True


# The pages that turn someone away: (heading, text, HTTP status).
_REFUSALS = {
    "full": (
        N_("This study is full"),
        N_("Thank you for your interest. All places are taken; please return the study on Prolific."),
        503,
    ),
    "already": (
        N_("You have already started this study"),
        N_(
            "Please continue in the browser where you started, or open the study again "
            "from your Prolific account (its link carries your session)."
        ),
        409,
    ),
    "prolific_only": (
        N_("Please open this study from Prolific"),
        N_(
            "This study takes part only through Prolific. Open it from your Prolific "
            "account: its link tells us who you are, so your place and payment are yours."
        ),
        403,
    ),
    "closed": (
        N_("This study is not open"),
        N_("It is not taking part in new sessions right now. Please try again later."),
        403,
    ),
    "rate_limited": (N_("Too many attempts"), N_("Please wait a minute and try again."), 429),
}


def _refusal(study: Study, which: str) -> tuple[str, int]:
    heading, text, status = _REFUSALS[which]
    return render_template("message.html", study=study, heading=gettext(heading), text=gettext(text)), status


def _malformed_id(values: Mapping[str, str]) -> str | None:
    """The first of Prolific's parameters present in ``values`` that is not a Prolific id
    (24 lowercase hex digits); None when each is a Prolific id or absent (issue 31.4: a
    STUDY_ID such as ``st1/../x`` went into the researcher's Prolific API calls)."""
    return next((k for k in _PARAMS if values.get(k) and not is_prolific_id(values[k])), None)


def _malformed_page(study: Study, name: str) -> tuple[str, int]:
    text = gettext(
        "The link's %(name)s is not a Prolific id (24 characters, digits and a to f). "
        "Please open the study again from your Prolific account, without changing its link.",
        name=name,
    )
    heading = gettext("This link is not valid")
    return render_template("message.html", study=study, heading=heading, text=text), 400


@bp.get("/s/<slug>")
def entry(slug: str) -> Any:
    """Where Prolific sends participants: resume a session, or show the consent page."""
    study = get_study(slug)
    if session_for(study) is not None:
        return redirect(url_for(".go", slug=slug))
    malformed = _malformed_id(request.args)
    if malformed is not None:
        return _malformed_page(study, malformed)
    params = {k: request.args.get(k, "") for k in _PARAMS}
    try:
        existing = sessions.resumable_session(
            study, params["PROLIFIC_PID"] or None, params["SESSION_ID"] or None
        )
    except sessions.AlreadyTakingPart:
        return _refusal(study, "already")
    if existing is not None:
        remember(study, existing)
        return redirect(url_for(".go", slug=slug))
    if study.status != "open":
        return _refusal(study, "closed")
    manifest = package_view(study).manifest
    if manifest.require_prolific_id and not params["PROLIFIC_PID"]:
        return _refusal(study, "prolific_only")
    consent = manifest.texts.consent
    return render_template(
        "consent.html", study=study, consent=consent, params=params, **_steps(manifest, "consent")
    )


@bp.post("/s/<slug>/consent")
def consent(slug: str) -> Any:
    study = get_study(slug)
    if session_for(study) is not None:
        return redirect(url_for(".go", slug=slug))
    if study.status != "open":
        return _refusal(study, "closed")
    # Checked on the POST too: the form is the participant's to edit.
    malformed = _malformed_id(request.form)
    if malformed is not None:
        return _malformed_page(study, malformed)
    pid = request.form.get("PROLIFIC_PID") or None
    if pid is None and package_view(study).manifest.require_prolific_id:
        return _refusal(study, "prolific_only")
    if request.form.get("choice") != "accept":
        try:
            sessions.record_decline(study, pid, request.remote_addr or "")
        except sessions.RateLimited:
            return _refusal(study, "rate_limited")
        return _done_page(study, DECLINED)
    try:
        sess = sessions.start_session(
            study,
            pid=pid,
            prolific_study_id=request.form.get("STUDY_ID") or None,
            prolific_session_id=request.form.get("SESSION_ID") or None,
            user_agent=request.headers.get("User-Agent", ""),
            ip=request.remote_addr or "",
            screen=request.form.get("screen", ""),
        )
    except sessions.StudyFull:
        return _refusal(study, "full")
    except sessions.AlreadyTakingPart:
        return _refusal(study, "already")
    except sessions.RateLimited:
        return _refusal(study, "rate_limited")
    remember(study, sess)
    return redirect(url_for(".go", slug=slug))


@bp.get("/s/<slug>/go")
def go(slug: str) -> Any:
    """The page of the session's current stage."""
    study = get_study(slug)
    sess = session_for(study)
    if sess is None:
        return redirect(url_for(".entry", slug=slug))
    view = package_view(study)
    if sess.status != ACTIVE or sess.stage == SessionStage.DONE:
        return _done_page(study, sess.status)
    stages.touch(sess)
    db.session.commit()
    m = view.manifest
    if sess.stage == SessionStage.VOLUME:
        return render_template("volume.html", study=study, clip=m.calibration_clip, **_steps(m, "volume"))
    if sess.stage == SessionStage.INSTRUCTIONS:
        return render_template(
            "instructions.html", study=study, instructions=m.texts.instructions, **_steps(m, "instructions")
        )
    if sess.stage == SessionStage.QUESTIONNAIRE:
        return render_template(
            "questionnaire.html", study=study, fields=m.questionnaire, errors={}, **_steps(m, "questionnaire")
        )
    screening = view.manifest.screening
    on_check = screening if sess.stage == SessionStage.SCREENING else None
    return render_template(
        "trial.html",
        study=study,
        stage=sess.stage,
        example=on_check.example if on_check else None,
        check=on_check.kind if on_check else None,
        comments=m.trial_comments,
        # study.js marks practice and the main trials as their phase comes
        **_steps(m, "screening" if on_check else "main"),
    )


def _steps(manifest: StudyManifest, current: str) -> dict[str, Any]:
    """The study's steps, for the indicator at the top of each page (issue 37): only those
    this study has, in the order a session meets them, and which one the page is."""
    practice = any(t.phase == "practice" for t in manifest.trials)
    steps = [
        ("consent", gettext("Consent"), True),
        ("volume", gettext("Volume"), manifest.calibration_clip is not None),
        ("screening", gettext("Headphone check"), manifest.screening is not None),
        ("instructions", gettext("Instructions"), True),
        ("practice", gettext("Practice"), practice),
        ("main", gettext("Listening"), True),
        ("questionnaire", gettext("Last questions"), bool(manifest.questionnaire)),
    ]
    return {"steps": [(key, name) for key, name, present in steps if present], "current_step": current}


@bp.post("/s/<slug>/<any(volume, instructions):stage>")
def next_stage(slug: str, stage: str) -> Any:
    study = get_study(slug)
    sess = session_for(study)
    if sess is not None:
        try:
            sessions.advance_stage(sess, study, stage)
        except sessions.ListFull:
            return _refusal(study, "full")
    return redirect(url_for(".go", slug=slug))


@bp.post("/s/<slug>/questionnaire")
def questionnaire(slug: str) -> Any:
    study = get_study(slug)
    sess = session_for(study)
    if sess is None:
        return redirect(url_for(".entry", slug=slug))
    fields = package_view(study).manifest.questionnaire
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        value = request.form.get(f.id, "").strip()[:2000]
        if not value:
            if f.required:
                errors[f.id] = gettext("Please answer this question.")
            continue
        if f.type == "number":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):  # "nan", "inf" and "1e999" parse, and cannot be stored as JSON
                answers[f.id] = number
            else:
                errors[f.id] = gettext("Please enter a number.")
        elif f.type == "choice" and value not in f.choices:
            errors[f.id] = gettext("Please choose one of the options.")
        else:
            answers[f.id] = value
    if errors:
        return render_template("questionnaire.html", study=study, fields=fields, errors=errors), 400
    stages.finish_questionnaire(sess, answers)
    return redirect(url_for(".go", slug=slug))


def _done_page(study: Study, status: str) -> str:
    view = package_view(study)
    # Each end state shows its own code only, and no code says anything about another.
    which: dict[str, str] = {COMPLETED: "complete", SCREENED_OUT: "screened_out", DECLINED: "declined"}
    code = study.completion_codes.get(which.get(status, ""))
    url = PROLIFIC_COMPLETE.format(code=code) if code and current_app.config["PROLIFIC_REDIRECT"] else None
    return render_template(
        "done.html", study=study, status=status, code=code, url=url, debrief=view.manifest.texts.debrief
    )
