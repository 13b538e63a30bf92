"""Live numbers of a study for the dashboard, its JSON endpoint and ``study-app status``.

Everything is computed with aggregate queries (counts per list and status, one
pass over responses per feature), so the dashboard stays cheap to refresh while a
study runs. Preview sessions are left out of every count; the recent sessions show them,
marked "pilot".
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import case, func, select

from study_app.db import db
from study_app.export import answered_trials
from study_app.models import (
    ABANDONED,
    ACTIVE,
    BOT_AGENT,
    COMPLETED,
    Event,
    Response,
    SessionStatus,
    Study,
    StudySession,
    TrialList,
    utcnow,
)
from study_app.packages import package_view

# The statuses a session on a list can show (a declined one never got a list).
STATUSES: tuple[str, ...] = tuple(s for s in SessionStatus if s is not SessionStatus.DECLINED)


def stale_before() -> datetime:
    return utcnow() - timedelta(seconds=current_app.config["SESSION_TIMEOUT_S"])


def completed_durations_s(study: Study, *, include_previews: bool = False) -> list[float]:
    """Seconds from start to finish of every completed session (previews, the researcher's
    pilots, and bots only when asked: the dashboard leaves them out, the Prolific time check not)."""
    query = select(StudySession.started_at, StudySession.finished_at).where(
        StudySession.study_id == study.id, StudySession.status == COMPLETED
    )
    if not include_previews:
        query = query.where(~StudySession.preview, ~StudySession.user_agent.startswith(BOT_AGENT))
    return [(f - s).total_seconds() for s, f in db.session.execute(query) if f is not None]


def study_stats(study: Study, recent: int = 15) -> dict[str, Any]:
    """Counts per list, rates, durations, responses over time, per-feature counts, recent sessions."""
    stale = stale_before()
    # Active sessions idle past the timeout are shown as abandoned (their slot is free).
    shown_status = case(
        ((StudySession.status == ACTIVE) & (StudySession.last_seen_at < stale), ABANDONED),
        else_=StudySession.status,
    )
    names = list_names(study)
    per_list: dict[str, dict[str, Any]] = {}
    for lst in study.lists:
        per_list[lst.list_key] = {s: 0 for s in STATUSES} | {
            "target": lst.target,
            "name": names[lst.list_key],
        }
    rows = db.session.execute(
        select(TrialList.list_key, shown_status, func.count(StudySession.id))
        .join(TrialList, StudySession.list_id == TrialList.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
        .group_by(TrialList.list_key, shown_status)
    )
    for list_key, status, n in rows:
        per_list[list_key][status] = per_list[list_key].get(status, 0) + n
    totals = {s: sum(v[s] for v in per_list.values()) for s in STATUSES}
    bots = db.session.scalar(
        select(func.count(StudySession.id)).where(
            StudySession.study_id == study.id, StudySession.user_agent.startswith(BOT_AGENT)
        )
    )
    declined = db.session.scalar(
        select(func.count(Event.id)).where(Event.study_id == study.id, Event.kind == "decline")
    )
    started = sum(totals.values())
    previews = db.session.scalar(
        select(func.count(StudySession.id)).where(StudySession.study_id == study.id, StudySession.preview)
    )
    problems = _problem_counts(study)

    durations = completed_durations_s(study)
    screening = dict(
        db.session.execute(
            select(Event.kind, func.count(Event.id))
            .where(Event.study_id == study.id, Event.kind.in_(("screening_pass", "screening_fail")))
            .group_by(Event.kind)
        ).all()
    )
    view = package_view(study)
    row_to_trial = {row: tid for tid, row in view.trial_rows.items()}
    per_trial = db.session.execute(
        select(
            Response.trial_id,
            func.count(Response.id),
            func.sum(case((Response.correct.is_(True), 1), else_=0)),
        )
        .join(StudySession, Response.session_id == StudySession.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
        .group_by(Response.trial_id)
    ).all()
    per_feature: dict[str, dict[str, int]] = {}
    attention_n = attention_wrong = 0
    n_responses = 0
    for trial_row, n, n_correct in per_trial:
        n_responses += n
        tk = view.key.trials[row_to_trial[trial_row]]
        if tk.trial_type == "attention":
            attention_n += n
            attention_wrong += n - int(n_correct or 0)
        if tk.group and tk.trial_type:
            entry = per_feature.setdefault(tk.group, {})
            entry[tk.trial_type] = entry.get(tk.trial_type, 0) + n
    screening_n = sum(screening.values())
    return {
        "study": study.slug,
        "title": study.title,
        "status": study.status,
        "lists": per_list,
        "totals": totals
        | {
            "declined": declined or 0,
            "started": started,
            "responses": n_responses,
            "bots": bots or 0,
            "previews": previews or 0,
        },
        # Nothing but the researcher's previews and bots so far: the numbers are a pilot's.
        "pilot": started == (bots or 0) and bool(previews or bots),
        "problem_reports": problems,
        "completion_rate": totals[COMPLETED] / started if started else None,
        "median_duration_s": statistics.median(durations) if durations else None,
        "screening_failure_rate": screening.get("screening_fail", 0) / screening_n if screening_n else None,
        "attention_failure_rate": attention_wrong / attention_n if attention_n else None,
        "per_feature": dict(sorted(per_feature.items())),
        "timeline": _timeline(study),
        "recent_sessions": _recent_sessions(study, recent, stale, names),
    }


def list_names(study: Study) -> dict[str, str]:
    """ "List 1" ... in the package's order, for the opaque list ids (issue 37: shown as hashes)."""
    return {lst.id: f"List {i + 1}" for i, lst in enumerate(package_view(study).manifest.lists)}


def _timeline(study: Study, bins: int = 24) -> list[dict[str, Any]]:
    """Responses per time bin since the first one (for the dashboard's SVG chart)."""
    stamps = db.session.scalars(
        select(Response.server_ts)
        .join(StudySession, Response.session_id == StudySession.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
        .order_by(Response.server_ts)
    ).all()
    if not stamps:
        return []
    first, last = stamps[0], max(stamps[-1], stamps[0] + timedelta(minutes=1))
    width = (last - first) / bins
    counts = [0] * bins
    for ts in stamps:
        counts[min(bins - 1, int((ts - first) / width))] += 1
    return [{"start": (first + i * width).isoformat(), "responses": c} for i, c in enumerate(counts)]


def _problem_counts(study: Study) -> dict[str, int]:
    """ "Problem with the audio?" reports of participants and bots (not previews), and how many
    were sent under a trial the session never answered (it may have given up there)."""
    reports = db.session.execute(
        select(Event.session_id, Event.data)
        .join(StudySession, Event.session_id == StudySession.id)
        .where(Event.study_id == study.id, Event.kind == "clip_problem", ~StudySession.preview)
    ).all()
    if not reports:
        return {"all": 0, "unanswered": 0}
    view = package_view(study)
    answered = answered_trials([sid for sid, _ in reports])
    unanswered = sum(
        (sid, view.trial_rows.get(str(data.get("trial")))) not in answered for sid, data in reports
    )
    return {"all": len(reports), "unanswered": unanswered}


def _recent_sessions(study: Study, n: int, stale: datetime, names: dict[str, str]) -> list[dict[str, Any]]:
    sessions = db.session.scalars(
        select(StudySession)
        .where(StudySession.study_id == study.id)
        .order_by(StudySession.last_seen_at.desc())
        .limit(n)
    ).all()
    events: dict[int | None, list[str]] = {}
    if sessions:
        for session_id, kind in db.session.execute(
            select(Event.session_id, Event.kind)
            .where(Event.session_id.in_([s.id for s in sessions]))
            .order_by(Event.id)
        ):
            events.setdefault(session_id, []).append(kind)
    out = []
    for s in sessions:
        status = (
            ABANDONED
            if s.status == ACTIVE and s.last_seen_at.replace(tzinfo=stale.tzinfo) < stale
            else s.status
        )
        out.append(
            {
                "session": f"s{s.id}",
                "list": f"{names.get(s.trial_list.list_key, '?')} ({s.trial_list.list_key})",
                # "pilot": the researcher's own preview (never counted or exported).
                "who": "pilot"
                if s.preview
                else "bot"
                if s.user_agent.startswith(BOT_AGENT)
                else "participant",
                "status": status,
                "prolific": s.prolific_status or "",  # at the last `study-app prolific --sync`
                "progress": f"{s.position}/{len(s.trial_order)}",
                "stage": s.stage,
                "started": s.started_at.isoformat(timespec="seconds"),
                "last_seen": s.last_seen_at.isoformat(timespec="seconds"),
                "events": events.get(s.id, [])[-6:],
                # "field: answer" pairs in the config's order; free text is cut for the table.
                "questionnaire": "; ".join(f"{k}: {str(v)[:80]}" for k, v in (s.questionnaire or {}).items()),
            }
        )
    return out


def idle_sessions(study: Study) -> list[StudySession]:
    """Active sessions nobody has touched for SESSION_TIMEOUT_S (shown as abandoned)."""
    return list(
        db.session.scalars(
            select(StudySession).where(
                StudySession.study_id == study.id,
                StudySession.status == ACTIVE,
                StudySession.last_seen_at < stale_before(),
            )
        )
    )


def release_abandoned(study: Study) -> list[StudySession]:
    """Mark active sessions idle past the timeout as abandoned (their list slots are freed)."""
    sessions = idle_sessions(study)
    for s in sessions:
        s.status = ABANDONED
        db.session.add(Event(session_id=s.id, study_id=study.id, kind="abandoned", data={}))
    db.session.commit()
    return list(sessions)


def stored_answers(keys: set[str]) -> tuple[int, int]:
    """Responses stored for these idempotency keys, and (session, trial, attempt) stored twice.

    What ``study-app simulate`` checks after its bots: every sent answer stored once.
    """
    stored = 0
    sessions: set[int] = set()
    ordered = sorted(keys)
    for i in range(0, len(ordered), 500):
        rows = db.session.execute(
            select(Response.session_id).where(Response.idempotency_key.in_(ordered[i : i + 500]))
        ).all()
        stored += len(rows)
        sessions.update(r[0] for r in rows)
    groups = (
        select(Response.session_id)
        .where(Response.session_id.in_(sessions))
        .group_by(Response.session_id, Response.trial_id, Response.attempt)
        .having(func.count(Response.id) > 1)
        .subquery()
    )
    duplicates = db.session.scalar(select(func.count()).select_from(groups)) or 0
    return stored, duplicates
