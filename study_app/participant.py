"""Pages participants see: entry and consent, volume set-up, instructions, the trial
runner, the questionnaire and the completion page. The session's stage (server-side)
decides which page ``/s/<slug>/go`` shows, so reload and back always land right.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from sqlalchemy import select

from study_app import sessions
from study_app.db import db
from study_app.models import ACTIVE, COMPLETED, DECLINED, SCREENED_OUT, SessionStage, Study, StudySession
from study_app.packages import package_view

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


def study_and_session(slug: str) -> tuple[Study | None, StudySession | None]:
    """The study and this browser's session in it, in one query (the API's hot path)."""
    token = session.get("studies", {}).get(slug)
    if token:
        row = db.session.execute(
            select(Study, StudySession)
            .join(StudySession, StudySession.study_id == Study.id)
            .where(Study.slug == slug, StudySession.token == token)
        ).first()
        if row is not None:
            return row[0], row[1]
    return db.session.scalar(select(Study).where(Study.slug == slug)), None


def remember(study: Study, sess: StudySession) -> None:
    studies = dict(session.get("studies", {}))
    studies[study.slug] = sess.token
    session["studies"] = studies
    session.permanent = True


def _full_page(study: Study) -> tuple[str, int]:
    return render_template(
        "message.html",
        study=study,
        heading="This study is full",
        text="Thank you for your interest. All places are taken; please return the study on Prolific.",
    ), 503


def _already_taking_part(study: Study) -> tuple[str, int]:
    return render_template(
        "message.html",
        study=study,
        heading="You have already started this study",
        text="Please continue in the browser where you started, or open the study again "
        "from your Prolific account (its link carries your session).",
    ), 409


def _closed_page(study: Study) -> tuple[str, int]:
    return render_template(
        "message.html",
        study=study,
        heading="This study is not open",
        text="It is not taking part in new sessions right now. Please try again later.",
    ), 403


@bp.get("/s/<slug>")
def entry(slug: str) -> Any:
    """Where Prolific sends participants: resume a session, or show the consent page."""
    study = get_study(slug)
    if session_for(study) is not None:
        return redirect(url_for(".go", slug=slug))
    params = {k: request.args.get(k, "")[:128] for k in _PARAMS}
    try:
        existing = sessions.resumable_session(
            study, params["PROLIFIC_PID"] or None, params["SESSION_ID"] or None
        )
    except sessions.AlreadyTakingPart:
        return _already_taking_part(study)
    if existing is not None:
        remember(study, existing)
        return redirect(url_for(".go", slug=slug))
    if study.status != "open":
        return _closed_page(study)
    texts = package_view(study).manifest.texts
    return render_template("consent.html", study=study, consent=texts.consent, params=params)


@bp.post("/s/<slug>/consent")
def consent(slug: str) -> Any:
    study = get_study(slug)
    if session_for(study) is not None:
        return redirect(url_for(".go", slug=slug))
    if study.status != "open":
        return _closed_page(study)
    pid = request.form.get("PROLIFIC_PID", "")[:128] or None
    if request.form.get("choice") != "accept":
        data = {"participant": sessions.pid_hash(study, pid)} if pid else {}
        sessions.record_event(study, None, "decline", data)
        return _done_page(study, DECLINED)
    try:
        sess = sessions.start_session(
            study,
            pid=pid,
            prolific_study_id=request.form.get("STUDY_ID", "")[:128] or None,
            prolific_session_id=request.form.get("SESSION_ID", "")[:128] or None,
            user_agent=request.headers.get("User-Agent", ""),
            ip=request.remote_addr or "",
        )
    except sessions.StudyFull:
        return _full_page(study)
    except sessions.AlreadyTakingPart:
        return _already_taking_part(study)
    except sessions.RateLimited:
        return render_template(
            "message.html",
            study=study,
            heading="Too many attempts",
            text="Please wait a minute and try again.",
        ), 429
    sess.screen = request.form.get("screen", "")[:32]
    db.session.commit()
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
    sessions.touch(sess)
    db.session.commit()
    if sess.stage == SessionStage.VOLUME:
        return render_template("volume.html", study=study, clip=view.manifest.calibration_clip)
    if sess.stage == SessionStage.INSTRUCTIONS:
        return render_template(
            "instructions.html", study=study, instructions=view.manifest.texts.instructions
        )
    if sess.stage == SessionStage.QUESTIONNAIRE:
        return render_template(
            "questionnaire.html", study=study, fields=view.manifest.questionnaire, errors={}
        )
    return render_template("trial.html", study=study, stage=sess.stage)


@bp.post("/s/<slug>/<any(volume, instructions):stage>")
def next_stage(slug: str, stage: str) -> Any:
    study = get_study(slug)
    sess = session_for(study)
    if sess is not None:
        try:
            sessions.advance_stage(sess, study, stage)
        except sessions.ListFull:
            return _full_page(study)
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
                errors[f.id] = "Please answer this question."
            continue
        if f.type == "number":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):  # "nan", "inf" and "1e999" parse, and cannot be stored as JSON
                answers[f.id] = number
            else:
                errors[f.id] = "Please enter a number."
        elif f.type == "choice" and value not in f.choices:
            errors[f.id] = "Please choose one of the options."
        else:
            answers[f.id] = value
    if errors:
        return render_template("questionnaire.html", study=study, fields=fields, errors=errors), 400
    sessions.finish_questionnaire(sess, answers)
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
