"""The listening evidence: which byte ranges of which clips a session was served, and
how long a trial must at least take (its clips' duration)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from study_app.db import db
from study_app.models import (
    ClipRequest,
    SessionState,
    Study,
    StudyRef,
    StudySession,
    utcnow,
)
from study_app.packages import package_view


def served_key(sess: StudySession | SessionState) -> str:
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
    key = served_key(sess)
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
