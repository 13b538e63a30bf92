"""Data-deletion requests: everything stored about one participant, gone in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select

from study_app.db import db
from study_app.models import Event, Participant, Response, Study, StudySession
from study_app.sessions import pid_hash as hash_pid


class NoSuchParticipant(LookupError):
    pass


@dataclass(frozen=True)
class Forgotten:
    digest: str
    """The participant's salted hash (the export's participant column)."""
    participant: bool
    """False when they only declined (no participant row, just a 'decline' event)."""
    responses: int
    declines: int


def forget_participant(
    study: Study, *, prolific_pid: str | None = None, digest: str | None = None
) -> Forgotten:
    """Delete the responses, events, sessions and participant record of one participant,
    named by their Prolific id (hashed with the study's salt) or by that hash."""
    if (prolific_pid is None) == (digest is None):
        raise ValueError("give exactly one of prolific_pid and digest")
    if prolific_pid is not None:
        digest = hash_pid(study, prolific_pid)
    assert digest is not None
    participant = db.session.scalar(
        select(Participant).where(Participant.study_id == study.id, Participant.pid_hash == digest)
    )
    # Someone who only declined has no participant row, just a 'decline' event naming them.
    declined = (
        Event.study_id == study.id,
        Event.session_id.is_(None),
        Event.kind == "decline",
        Event.data["participant"].as_string() == digest,
    )
    n_declines = db.session.scalar(select(func.count(Event.id)).where(*declined)) or 0
    if participant is None and not n_declines:
        raise NoSuchParticipant(f"no such participant in study '{study.slug}'")
    db.session.execute(delete(Event).where(*declined))
    n_responses = 0
    if participant is not None:
        sessions = select(StudySession.id).where(StudySession.participant_id == participant.id)
        n_responses = (
            db.session.scalar(select(func.count(Response.id)).where(Response.session_id.in_(sessions))) or 0
        )
        db.session.execute(delete(Response).where(Response.session_id.in_(sessions)))
        db.session.execute(delete(Event).where(Event.session_id.in_(sessions)))
        db.session.execute(delete(StudySession).where(StudySession.participant_id == participant.id))
        db.session.delete(participant)
    db.session.commit()
    return Forgotten(digest, participant is not None, n_responses, n_declines)
