"""What a researcher pastes into Prolific's study form for an imported study.

Prolific needs the study URL (with its three placeholders, which it fills per
participant), the completion codes the app hands out at the end, the number of
places, and an estimated completion time. All of them follow from the package and
the public address the app is served at, so ``study-app prolific`` prints them
instead of leaving the researcher to assemble them by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from study_app.models import REJECTED, RETURNED, TIMED_OUT, Participant, Study, StudySession, utcnow
from study_app.packages import package_view
from study_app.participant import PROLIFIC_COMPLETE, PROLIFIC_PLACEHOLDERS
from study_app.prolific_api import ProlificClient

# A rough per-screen cost beyond listening: reading, deciding, clicking. Pilots replace it.
SECONDS_PER_ANSWER = 6.0
# Consent, volume set-up, instructions and the questionnaire together.
FIXED_SECONDS = 120.0


@dataclass(frozen=True)
class ProlificSetup:
    study_url: str
    codes: dict[str, str]
    places: int
    minutes: int
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "study_url": self.study_url,
            "codes": self.codes,
            "completion_urls": {k: PROLIFIC_COMPLETE.format(code=v) for k, v in self.codes.items()},
            "places": self.places,
            "estimated_minutes": self.minutes,
            "warnings": self.warnings,
        }


def prolific_setup(study: Study, base_url: str) -> ProlificSetup:
    """The values for Prolific's form; ``base_url`` is where participants reach the app."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--base-url must look like https://study.example.org, got {base_url!r}")
    view = package_view(study)
    warnings = []
    if parts.scheme != "https":
        warnings.append("the base URL is not https: Prolific participants need an encrypted connection")
    if study.status != "open":
        warnings.append(f"the study is '{study.status}': run 'study-app open {study.slug}' before publishing")
    trials = {t.id: t for t in view.manifest.trials}
    clips = view.manifest.clips
    longest = 0.0
    for lst in view.manifest.lists:
        heard = [c for tid in lst.trials for c in (*trials[tid].references, *trials[tid].candidates)]
        listening = sum(clips[c].duration_s for c in heard)
        longest = max(longest, listening + SECONDS_PER_ANSWER * len(lst.trials))
    codes = study.completion_codes
    return ProlificSetup(
        study_url=f"{base_url.rstrip('/')}/s/{study.slug}?{PROLIFIC_PLACEHOLDERS}",
        codes={
            "completed": codes["complete"],
            "screened_out": codes["screened_out"],
            "declined": codes["declined"],
        },
        places=sum(lst.target for lst in study.lists),
        minutes=math.ceil((longest + FIXED_SECONDS) / 60),
        warnings=warnings,
    )


# Prolific submission statuses that end a participant's part: the place goes back at once.
RELEASING = {"RETURNED": RETURNED, "TIMED-OUT": TIMED_OUT, "REJECTED": REJECTED}


@dataclass
class SyncResult:
    seen: int  # submissions on Prolific
    matched: int  # of those, sessions here
    released: list[str]  # "s<id> (list L): RETURNED"
    statuses: dict[str, int]  # Prolific status -> submissions


def sync_submissions(
    study: Study, client: ProlificClient, prolific_study_ids: list[str] | None = None
) -> SyncResult:
    """Pull every submission's status from Prolific and record it beside its session.

    A session is matched by Prolific's submission id (the SESSION_ID it was opened with),
    else by the participant's Prolific id (hashed as stored). RETURNED, TIMED-OUT and
    REJECTED submissions end their session here with that status: it no longer holds a
    place, so the next arrival can take it; its answers stay, flagged in the export's
    ``session_status``. Idempotent: a second sync changes nothing.
    """
    from sqlalchemy import select

    from study_app.db import db
    from study_app.sessions import pid_hash

    # One query: the sessions with their participants' hashed ids (no lazy load per session).
    rows = db.session.execute(
        select(StudySession, Participant.pid_hash)
        .join(Participant, StudySession.participant_id == Participant.id)
        .where(StudySession.study_id == study.id, ~StudySession.preview)
        .order_by(StudySession.id)
    ).all()
    ids = prolific_study_ids or sorted({s.prolific_study_id for s, _ in rows if s.prolific_study_id})
    by_submission = {s.prolific_session_id: s for s, _ in rows if s.prolific_session_id}
    by_participant = {digest: s for s, digest in rows}  # the latest session of each participant
    result = SyncResult(0, 0, [], {})
    for prolific_id in ids:
        for sub in client.submissions(prolific_id):
            result.seen += 1
            status = str(sub.get("status", ""))
            result.statuses[status] = result.statuses.get(status, 0) + 1
            sess = by_submission.get(str(sub.get("id", "")))
            if sess is None and sub.get("participant_id"):
                sess = by_participant.get(pid_hash(study, str(sub["participant_id"])))
            if sess is None:
                continue
            result.matched += 1
            sess.prolific_status = status[:32]
            ended = RELEASING.get(status)
            if ended is not None and sess.status != ended:
                sess.status = ended
                sess.finished_at = sess.finished_at or utcnow()
                result.released.append(f"s{sess.id} (list {sess.trial_list.list_key}): {status}")
    db.session.commit()
    return result
