"""The researcher's side: login, dashboard, live numbers, preview, export download, study status.

Every route here requires a logged-in admin: pages redirect to the login form,
``/admin/api/...`` answers 401 JSON. A test walks ``app.url_map`` to check that.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.security import check_password_hash, generate_password_hash

from study_app.db import db
from study_app.export import csv_stream
from study_app.models import Admin, LoginThrottle, Study, StudyStatus, TrialList, utcnow
from study_app.monitor import study_stats
from study_app.participant import get_study, remember
from study_app.sessions import start_session

bp = Blueprint("admin", __name__, url_prefix="/admin")

F = TypeVar("F", bound=Callable[..., Any])
STATUSES = tuple(StudyStatus)
# Lockout: after this many failures in a row, each further failure doubles the wait.
FREE_ATTEMPTS = 5
BASE_LOCK_S = 30
# Compared against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """scrypt (werkzeug's default KDF) with a random salt."""
    return generate_password_hash(password)


def set_admin_password(username: str, password: str) -> str:
    """Create the researcher account, or reset its password (logging out its old cookies).

    Returns "created" or "updated"; a password under 10 characters is refused.
    """
    if len(password) < 10:
        raise ValueError("password: use at least 10 characters")
    admin = db.session.scalar(select(Admin).where(Admin.username == username))
    if admin is None:
        db.session.add(Admin(username=username, password_hash=hash_password(password)))
        verb = "created"
    else:
        admin.password_hash = hash_password(password)
        admin.session_version += 1  # a new password logs out every old cookie
        # A new password lifts every lock on the name (the researcher may be the one locked out).
        db.session.execute(
            delete(LoginThrottle).where(LoginThrottle.name_digest == _digest(f"name:{username}"))
        )
        verb = "updated"
    db.session.commit()
    return verb


def set_study_status(study: Study, status: str) -> None:
    """Open, pause, close (or return to draft) a study; participants start only open ones."""
    if status not in STATUSES:
        raise ValueError(f"status: one of {', '.join(STATUSES)}, got {status!r}")
    study.status = StudyStatus(status)
    db.session.commit()


def _current_admin() -> Admin | None:
    """The admin this cookie belongs to, if its session version is still the admin's."""
    admin_id = session.get("admin_id")
    if admin_id is None:
        return None
    admin = db.session.get(Admin, admin_id)
    if admin is None or session.get("admin_version") != admin.session_version:
        return None
    return admin


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if _current_admin() is None:
            if request.path.startswith("/admin/api/"):
                return jsonify(error="login required"), 401
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


@bp.after_request
def _never_cached(response: Response) -> Response:
    """Nothing of /admin (the export above all: participants' answers) stays in any cache.

    The app-wide header covers HTML and JSON only; a CSV download had none (issue 31.7).
    """
    response.headers["Cache-Control"] = "no-store"
    return response


def _digest(text: str) -> str:
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _throttle(username: str) -> LoginThrottle:
    """This (name, address)'s failure counter, created if new, locked until commit.

    Created with INSERT ... ON CONFLICT DO NOTHING, then read FOR UPDATE (PostgreSQL;
    SQLite transactions are serialised): parallel guesses queue on the row, so each sees
    the failures before it. Without the row lock 39 of 40 parallel wrong guesses got
    through (issue 16.7).
    """
    name, ip = _digest(f"name:{username}"), _digest(f"ip:{request.remote_addr or ''}")
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    db.session.execute(
        insert(LoginThrottle)
        .values(name_digest=name, ip_digest=ip, failures=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    return db.session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.name_digest == name, LoginThrottle.ip_digest == ip)
        .with_for_update()
    ).one()


def _locked_for(row: LoginThrottle) -> float:
    if row.locked_until is None:
        return 0.0
    until = row.locked_until if row.locked_until.tzinfo else row.locked_until.replace(tzinfo=utcnow().tzinfo)
    return max(0.0, (until - utcnow()).total_seconds())


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        username = request.form.get("username", "")[:64]
        password = request.form.get("password", "")[:1024]
        row = _throttle(username)
        admin = db.session.scalar(select(Admin).where(Admin.username == username))
        if (wait := _locked_for(row)) > 0:
            db.session.commit()  # the row lock goes first: queued guesses need not wait on this
            check_password_hash(_DUMMY_HASH, password)  # as long as any other answer
            error = f"Too many failed attempts. Try again in {int(wait) + 1} seconds."
        elif admin is not None and check_password_hash(admin.password_hash, password):
            db.session.delete(row)
            db.session.commit()
            # A fresh session on login: nothing set before (by anyone) survives into it.
            session.clear()
            session["admin_id"] = admin.id
            session["admin_version"] = admin.session_version
            session["admin_nonce"] = secrets.token_hex(8)
            target = request.args.get("next", "")
            # Only a path of this site: CR/LF would split the Location header (was a 500).
            if not target.startswith("/admin") or target.startswith("//") or not target.isprintable():
                target = url_for("admin.dashboard")
            return redirect(target)
        else:
            if admin is None:
                check_password_hash(_DUMMY_HASH, password)  # unknown names take as long
            row.failures += 1
            row.updated_at = utcnow()
            if row.failures >= FREE_ATTEMPTS:
                lock = BASE_LOCK_S * 2 ** min(row.failures - FREE_ATTEMPTS, 20)
                row.locked_until = utcnow() + timedelta(seconds=min(lock, 24 * 3600))
            # Counters a day old go: names typed once must not pile up.
            db.session.execute(
                delete(LoginThrottle).where(LoginThrottle.updated_at < utcnow() - timedelta(days=1))
            )
            db.session.commit()
            error = "Wrong username or password."
        return render_template("admin/login.html", error=error), 401
    return render_template("admin/login.html", error=error)


@bp.post("/logout")
@login_required
def logout() -> Any:
    # Every cookie of this admin ends, copies included (a cookie is valid until it expires).
    admin = _current_admin()
    if admin is not None:
        admin.session_version += 1
        db.session.commit()
    session.clear()
    return redirect(url_for("admin.login"))


@bp.get("/")
@login_required
def dashboard() -> str:
    studies = db.session.scalars(select(Study).order_by(Study.slug)).all()
    return render_template("admin/index.html", studies=studies)


@bp.get("/s/<slug>")
@login_required
def study_page(slug: str) -> str:

    study = get_study(slug)
    return render_template("admin/study.html", study=study, stats=study_stats(study), statuses=STATUSES)


@bp.get("/api/s/<slug>/stats")
@login_required
def stats(slug: str) -> Any:

    return jsonify(study_stats(get_study(slug)))


@bp.post("/s/<slug>/status")
@login_required
def set_status(slug: str) -> Any:
    study = get_study(slug)
    status = request.form.get("status", "")
    if status not in STATUSES:
        abort(400)
    set_study_status(study, status)
    return redirect(url_for("admin.study_page", slug=slug))


@bp.get("/s/<slug>/export.csv")
@login_required
def export_csv(slug: str) -> Response:
    return _csv_download(slug, "responses")


@bp.get("/s/<slug>/problem-reports.csv")
@login_required
def export_problems_csv(slug: str) -> Response:
    return _csv_download(slug, "problem_reports")


def _csv_download(slug: str, table: str) -> Response:
    study = get_study(slug)
    response = Response(stream_with_context(csv_stream(study, table)), mimetype="text/csv")
    name = table.replace("_", "-")
    response.headers["Content-Disposition"] = f'attachment; filename="{study.slug}-{name}.csv"'
    return response


@bp.post("/s/<slug>/preview")
@login_required
def preview(slug: str) -> Any:
    """Walk through one list as a participant would, in a session flagged as preview."""

    study = get_study(slug)
    list_key = request.form.get("list", "")
    lst = db.session.scalar(
        select(TrialList).where(TrialList.study_id == study.id, TrialList.list_key == list_key)
    )
    if lst is None:
        abort(404)
    sess = start_session(
        study,
        pid=None,
        prolific_study_id=None,
        prolific_session_id=None,
        user_agent=request.headers.get("User-Agent", ""),
        ip="preview",
        preview_list=lst,
    )
    remember(study, sess)
    return redirect(url_for("participant.go", slug=slug))
