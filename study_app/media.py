"""Audio for participants: ``/media/<clip_id>``.

Only clips of a list this browser's session was assigned are served. Ids are
looked up in the package manifest and never joined into a path, so there is no
path to traverse. Range requests, ETag/conditional GET and long-lived immutable
caching come from ``send_file``; with ``MEDIA_X_ACCEL_PREFIX`` set, nginx sends the
file instead (X-Accel-Redirect) and the app only checks access.

Every response records which bytes of the clip it carries to the session
(``listening.record_clip_served``, the listening evidence): from the response itself
when the app sends the file, from the request when nginx does (nginx sends exactly
the requested ranges; the app counts only what it is sure nginx sends).
"""

from __future__ import annotations

from flask import Blueprint, Request, Response, abort, current_app, request, send_file, session
from sqlalchemy import select

from study_app.db import db
from study_app.listening import record_clip_served
from study_app.models import Study, StudySession, TrialList
from study_app.packages import package_view

bp = Blueprint("media", __name__, url_prefix="/media")

_MIME = {"flac": "audio/flac", "wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
ONE_YEAR = 365 * 24 * 3600


@bp.get("/<clip_id>")
def clip(clip_id: str) -> Response:
    tokens = list(session.get("studies", {}).values())
    if not tokens or len(clip_id) > 64:
        abort(404)
    rows = db.session.execute(
        select(Study, TrialList.list_key, StudySession)
        .join(StudySession, StudySession.study_id == Study.id)
        .join(TrialList, StudySession.list_id == TrialList.id)
        .where(StudySession.token.in_(tokens[:20]))
    ).all()
    for study, list_key, sess in rows:
        view = package_view(study)
        if clip_id not in view.list_clips.get(list_key, frozenset()):
            continue
        entry = view.manifest.clips[clip_id]
        path = view.root / entry.file
        mime = _MIME[entry.file.rsplit(".", 1)[1]]
        prefix = current_app.config.get("MEDIA_X_ACCEL_PREFIX")
        if prefix:
            resp = Response(status=200, mimetype=mime)
            resp.headers["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{study.slug}/{entry.file}"
            # nginx's own ETag would be mtime-size (the same for the two clips of an identical
            # pair, issue 16.3); the site turns it off and passes this opaque one on.
            resp.set_etag(clip_id)
            size = path.stat().st_size
            served = requested_ranges(request, size)
        else:
            # The ETag is the opaque clip id, not the content hash: equal ETags would tell
            # a participant that two "different" clips are the same audio.
            resp = send_file(path, mimetype=mime, conditional=True, etag=clip_id, max_age=ONE_YEAR)
            size = path.stat().st_size
            served = sent_ranges(resp, size)
        resp.cache_control.private = True
        resp.cache_control.immutable = True
        resp.cache_control.max_age = ONE_YEAR
        resp.cache_control.public = False
        if request.method != "HEAD":  # a HEAD carries no bytes
            record_clip_served(sess, clip_id, size, served)
        return resp
    abort(404)


def sent_ranges(resp: Response, size: int) -> list[tuple[int, int]]:
    """The byte ranges ``[start, stop)`` a ``send_file`` response carries: all of the file
    (200), one range (206; werkzeug answers a multi-range request 416), or none (304)."""
    if resp.status_code == 200:
        return [(0, size)]
    if resp.status_code == 206 and resp.content_range.start is not None:
        return [(resp.content_range.start, resp.content_range.stop or size)]
    return []


def requested_ranges(req: Request, size: int) -> list[tuple[int, int]]:
    """The byte ranges ``[start, stop)`` of a file of ``size`` bytes that nginx sends for
    ``req`` (X-Accel-Redirect), counting none where it might send fewer than asked.

    No Range header: the whole file. ``bytes=a-b``, ``bytes=a-`` (open) and ``bytes=-n``
    (suffix), one or several: each clamped to the file, those wholly past its end
    dropped (nginx sends the satisfiable ones, or the whole file). Nothing for a
    conditional request (If-None-Match, If-Modified-Since: nginx may answer 304, and the
    request that filled the browser's cache was counted then) or a Range header that
    does not parse (nginx may answer 416).
    """
    if "If-None-Match" in req.headers or "If-Modified-Since" in req.headers:
        return []
    if "Range" not in req.headers:
        return [(0, size)]
    parsed = req.range
    if parsed is None or parsed.units != "bytes":
        return []
    out = []
    for start, stop in parsed.ranges:
        if start < 0:  # bytes=-n: the last n bytes
            first, end = max(0, size + start), size
        else:
            first, end = start, size if stop is None else min(stop, size)
        if first < end:
            out.append((first, end))
    return out
