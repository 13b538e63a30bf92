"""The response export: one row per stored response, joined with the key and the session.

Rows are read from the database in chunks (``yield_per``) and written in batches,
so an export of a million responses holds one batch in memory. Preview sessions
are never exported. ``docs/export.md`` documents every column
(``artifact_schemas.RESPONSES`` is the schema).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select

from artifact_schemas import PROBLEM_REPORTS, RESPONSES, write_table_batches
from artifact_schemas.study import ClipKey
from artifact_schemas.tables import csv_safe
from artifact_schemas.validity import SessionFacts, facts_from_answers
from artifact_schemas.version import package_version
from study_app.db import db
from study_app.models import Event, Participant, Response, Study, StudySession, Trial, TrialList
from study_app.packages import package_view

BATCH = 5000


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.isoformat().replace("+00:00", "Z") if ts.tzinfo else ts.isoformat() + "Z"


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    # SQLite hands back naive datetimes; every stored time is UTC.
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    return max(0.0, (end - start).total_seconds())


def session_facts(study: Study) -> dict[int, dict[str, Any]]:
    """Per session id: status, screening passed, share of attention checks right, times:
    the export's per-session columns, one query per fact (not per response); also what
    ``study_app.prolific.pay`` approves by."""
    view = package_view(study)
    attention_rows = [view.trial_rows[t] for t, k in view.key.trials.items() if k.trial_type == "attention"]
    facts: dict[int, dict[str, Any]] = {}
    rows = db.session.execute(
        select(StudySession, TrialList.list_key, Participant.pid_hash, Participant.raw_pid)
        .join(TrialList, StudySession.list_id == TrialList.id)
        .join(Participant, StudySession.participant_id == Participant.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
    )
    for sess, list_key, pid_hash, raw_pid in rows:
        started, finished = sess.started_at, sess.finished_at
        facts[sess.id] = {
            "session_id": f"s{sess.id}",
            "participant": pid_hash,
            "raw_pid": raw_pid,
            "list_id": list_key,
            "session_status": sess.status,
            "data_source": "simulated" if sess.simulated else "participant",
            "screening_passed": None,
            "attention_correct": None,
            "session_started": _iso(started),
            "session_finished": _iso(finished),
            "duration_s": (finished - started).total_seconds() if finished else None,
            "user_agent": sess.user_agent,
            "screen": sess.screen,
            "questionnaire": None
            if sess.questionnaire is None
            else json.dumps(sess.questionnaire, sort_keys=True, ensure_ascii=False),
        }
    screening = db.session.execute(
        select(Event.session_id, Event.kind)
        .where(Event.study_id == study.id, Event.kind.in_(("screening_pass", "screening_fail")))
        .order_by(Event.id)
    )
    for session_id, kind in screening:  # the last attempt decides
        if session_id in facts:
            facts[session_id]["screening_passed"] = kind == "screening_pass"
    if attention_rows:
        attention = db.session.execute(
            select(Response.session_id, func.avg(case((Response.correct.is_(True), 1.0), else_=0.0)))
            .where(Response.trial_id.in_(attention_rows))
            .group_by(Response.session_id)
        )
        for session_id, mean in attention:
            if session_id in facts and mean is not None:
                facts[session_id]["attention_correct"] = float(mean)
    return facts


def validity_facts(study: Study) -> dict[int, SessionFacts]:
    """Per session id, what :mod:`artifact_schemas.validity` judges (screening, attention,
    clips heard, median main RT), from the same columns the export carries, so that
    ``prolific --approve`` and the analysis of the export judge a session alike."""
    facts = session_facts(study)
    answers: dict[int, list[tuple[str, float, int | None]]] = {sid: [] for sid in facts}
    rows = db.session.execute(
        select(Response.session_id, Trial.phase, Response.rt_ms, Response.clips_unfetched)
        .join(Trial, Response.trial_id == Trial.id)
        .join(StudySession, Response.session_id == StudySession.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
    )
    for session_id, phase, rt_ms, unfetched in rows:
        answers[session_id].append((phase, rt_ms, unfetched))
    return {
        sid: facts_from_answers(f["screening_passed"], f["attention_correct"], answers[sid])
        for sid, f in facts.items()
    }


def iter_export_batches(
    study: Study, *, include_prolific_ids: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """The export's rows in batches, ordered by session and position."""
    view = package_view(study)
    key = view.key
    facts = session_facts(study)
    # Provenance, the same on every row: which package, which software, when.
    provenance = {
        "package_sha256": study.manifest_sha256,
        "software_version": package_version(),
        "exported_at": _iso(datetime.now(UTC)),
    }
    options = {t.id: {o.id: (i, o.text) for i, o in enumerate(t.options)} for t in view.manifest.trials}
    problems = _problems(study)
    candidates = {t.id: t.candidates for t in view.manifest.trials}
    clips = view.manifest.clips
    audio_s = {
        t.id: round(sum(clips[c].duration_s for c in {*t.references, *t.candidates}), 3)
        for t in view.manifest.trials
    }
    query = (
        select(Response, Trial.trial_key, Trial.phase)
        .join(Trial, Response.trial_id == Trial.id)
        .join(StudySession, Response.session_id == StudySession.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
        .order_by(Response.session_id, Response.attempt, Response.position)
        .execution_options(yield_per=BATCH)
    )
    batch: list[dict[str, Any]] = []
    for response, trial_key, phase in db.session.execute(query):
        s = facts[response.session_id]
        tk = key.trials[trial_key]
        chosen = options[trial_key].get(response.answer or "")
        role = None
        if chosen is not None and candidates[trial_key] and chosen[0] < len(candidates[trial_key]):
            role = key.clips[candidates[trial_key][chosen[0]]].role
        correct = options[trial_key].get(tk.correct_option or "")
        batch.append(
            {
                "schema_version": RESPONSES.version,
                "study_id": study.slug,
                "session_id": s["session_id"],
                "participant": s["participant"],
                "prolific_pid": s["raw_pid"] if include_prolific_ids else None,
                "list_id": s["list_id"],
                "trial_id": trial_key,
                "trial_type": tk.trial_type,
                "phase": phase,
                "position": response.position,
                "attempt": response.attempt,
                "answer": response.answer,
                "answer_text": chosen[1] if chosen else None,
                "answer_role": role,
                "rating": response.rating,
                "confidence": response.confidence,
                "sliders": _sliders(response.slider_values, candidates[trial_key], key.clips),
                "problems": problems.get((response.session_id, trial_key)),
                "comment": response.comment,
                "correct": response.correct,
                "correct_option": tk.correct_option,
                "correct_text": correct[1] if correct else None,
                "n_options": len(options[trial_key]) or None,
                "rt_ms": response.rt_ms,
                "play_counts": json.dumps(response.play_counts, sort_keys=True),
                "client_ts": response.client_ts,
                "server_ts": _iso(response.server_ts),
                "served_ts": _iso(response.served_at),
                "answer_after_s": _seconds(response.served_at, response.server_ts),
                "audio_s": audio_s[trial_key],
                "clips_unfetched": response.clips_unfetched,
                "feature_id": tk.feature_id,
                "layer": tk.layer,
                "labeler": tk.labeler,
                "label": tk.label,
                "clap_score": tk.clap_score,
                "strength": tk.strength,
                "prompt": tk.prompt,
                "seed": tk.seed,
                "check": tk.check,
                "item": tk.item,
                "condition": tk.condition,
                **{k: s[k] for k in _SESSION_COLUMNS},
                **provenance,
            }
        )
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _problems(study: Study) -> dict[tuple[int, str], str]:
    """(session, trial id) -> the problem reports sent under that trial, as a JSON list."""
    reports: dict[tuple[int, str], list[dict[str, str]]] = {}
    query = (
        select(Event.session_id, Event.data)
        .where(Event.study_id == study.id, Event.kind == "clip_problem", Event.session_id.is_not(None))
        .order_by(Event.id)
    )
    for session_id, data in db.session.execute(query):
        report = {"reason": str(data.get("reason", "")), "text": str(data.get("text", ""))}
        reports.setdefault((session_id, str(data.get("trial", ""))), []).append(report)
    return {k: json.dumps(v, ensure_ascii=False) for k, v in reports.items()}


def iter_problem_batches(study: Study) -> Iterator[list[dict[str, Any]]]:
    """Every "Problem with the audio?" report of the study's sessions (previews left out), in
    the order sent, whether or not the trial was then answered: the responses export can only
    carry reports beside an answer, and a participant who gave up on a silent clip left none."""
    view = package_view(study)
    facts = session_facts(study)
    trials = {t.id: t for t in view.manifest.trials}
    reported = db.session.scalars(
        select(Event.session_id).distinct().where(Event.study_id == study.id, Event.kind == "clip_problem")
    )
    answered = answered_trials([sid for sid in reported if sid is not None])
    query = (
        select(Event.session_id, Event.data, Event.client_ts, Event.server_ts)
        .where(Event.study_id == study.id, Event.kind == "clip_problem", Event.session_id.is_not(None))
        .order_by(Event.id)
        .execution_options(yield_per=BATCH)
    )
    batch: list[dict[str, Any]] = []
    for session_id, data, client_ts, server_ts in db.session.execute(query):
        s = facts.get(session_id)
        trial = trials.get(str(data.get("trial", "")))
        if s is None or trial is None:  # a preview session; a trial of an older package
            continue
        batch.append(
            {
                "schema_version": PROBLEM_REPORTS.version,
                "study_id": study.slug,
                "session_id": s["session_id"],
                "participant": s["participant"],
                "list_id": s["list_id"],
                "trial_id": trial.id,
                "trial_type": view.key.trials[trial.id].trial_type,
                "phase": trial.phase,
                "clips": json.dumps([*trial.references, *trial.candidates]),
                "reason": str(data.get("reason", "")),
                "text": str(data.get("text", "")),
                "answered": (session_id, view.trial_rows[trial.id]) in answered,
                "client_ts": client_ts,
                "server_ts": _iso(server_ts),
                "session_status": s["session_status"],
                "data_source": s["data_source"],
            }
        )
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def answered_trials(session_ids: Collection[int]) -> set[tuple[int, int]]:
    """(session id, trial row id) of every stored answer of these sessions: whether a trial
    reported on was answered (the problem-report export and the dashboard's count). Only
    the sessions asked about are read, not every answer of the study."""
    ids = sorted(set(session_ids))
    found: set[tuple[int, int]] = set()
    for i in range(0, len(ids), 500):
        rows = db.session.execute(
            select(Response.session_id, Response.trial_id).where(Response.session_id.in_(ids[i : i + 500]))
        )
        found.update((session_id, trial_row) for session_id, trial_row in rows)
    return found


def _sliders(values: dict[str, int] | None, candidates: list[str], keys: dict[str, ClipKey]) -> str | None:
    """A slider answer as the export's JSON: each candidate in screen order with its role,
    condition and value (the key says which clip is the hidden reference, anchor, ...)."""
    if values is None:
        return None
    rows = [
        {
            "clip": clip,
            "role": keys[clip].role if clip in keys else None,
            "condition": keys[clip].condition if clip in keys else None,
            "value": values.get(clip),
        }
        for clip in candidates
    ]
    return json.dumps(rows)


_SESSION_COLUMNS = (
    "session_status",
    "data_source",
    "screening_passed",
    "attention_correct",
    "session_started",
    "session_finished",
    "duration_s",
    "user_agent",
    "screen",
    "questionnaire",
)


def export_responses(study: Study, out: str | Path, *, include_prolific_ids: bool = False) -> int:
    """Write the export to ``out`` (.csv or .parquet, atomically); return the number of rows."""
    return write_table_batches(
        out, RESPONSES, iter_export_batches(study, include_prolific_ids=include_prolific_ids)
    )


def export_problem_reports(study: Study, out: str | Path) -> int:
    """Write the problem reports to ``out`` (.csv or .parquet, atomically); return the number of rows."""
    return write_table_batches(out, PROBLEM_REPORTS, iter_problem_batches(study))


def csv_stream(study: Study, table: str = RESPONSES.name) -> Iterator[str]:
    """The CSV export of ``table`` (responses or problem_reports) as text chunks, for a
    streamed HTTP download."""

    schema, batches = (
        (PROBLEM_REPORTS, iter_problem_batches(study))
        if table == PROBLEM_REPORTS.name
        else (RESPONSES, iter_export_batches(study))
    )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=schema.column_names, extrasaction="ignore")
    writer.writeheader()
    yield buf.getvalue()
    for batch in batches:
        buf.seek(0)
        buf.truncate()
        for row in batch:
            writer.writerow({k: ("" if v is None else csv_safe(v)) for k, v in row.items()})
        yield buf.getvalue()
