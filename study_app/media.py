"""Audio for participants: ``/media/<clip_id>``.

Only clips of a list this browser's session was assigned are served. Ids are
looked up in the package manifest and never joined into a path, so there is no
path to traverse. Range requests, ETag/conditional GET and long-lived immutable
caching come from ``send_file``; with ``MEDIA_X_ACCEL_PREFIX`` set, nginx sends the
file instead (X-Accel-Redirect) and the app only checks access.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, send_file, session
from sqlalchemy import select

from study_app.db import db
from study_app.models import Study, StudySession, TrialList
from study_app.packages import package_view
from study_app.sessions import record_clip_request

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
        record_clip_request(sess, clip_id)  # listening evidence (sessions._listening_evidence)
        mime = _MIME[entry.file.rsplit(".", 1)[1]]
        prefix = current_app.config.get("MEDIA_X_ACCEL_PREFIX")
        if prefix:
            resp = Response(status=200, mimetype=mime)
            resp.headers["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{study.slug}/{entry.file}"
            # nginx's own ETag would be mtime-size (the same for the two clips of an identical
            # pair, issue 16.3); the site turns it off and passes this opaque one on.
            resp.set_etag(clip_id)
        else:
            # The ETag is the opaque clip id, not the content hash: equal ETags would tell
            # a participant that two "different" clips are the same audio.
            resp = send_file(
                view.root / entry.file, mimetype=mime, conditional=True, etag=clip_id, max_age=ONE_YEAR
            )
        resp.cache_control.private = True
        resp.cache_control.immutable = True
        resp.cache_control.max_age = ONE_YEAR
        resp.cache_control.public = False
        return resp
    abort(404)
