"""The application factory."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from markdown_it import MarkdownIt
from markupsafe import Markup
from werkzeug.wrappers import Response

csrf = CSRFProtect()

# No inline script or style anywhere: every page loads /static files only, so a label
# that contains "<script>" can at worst be displayed, never run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# CommonMark with raw HTML disabled: researcher texts are Markdown, and any HTML in
# them is shown as text rather than interpreted.
_markdown = MarkdownIt("commonmark", {"html": False})


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app. Nothing happens at import time; tests pass ``test_config``.

    The database is ``DATABASE_URL`` when set (PostgreSQL in production), else a
    SQLite file in the instance folder.
    """
    # STUDY_APP_INSTANCE puts the instance folder (default SQLite file, config.py)
    # outside the code, e.g. /srv/study-app/instance; Flask's default is beside the package.
    instance = os.environ.get("STUDY_APP_INSTANCE")
    app = Flask(
        __name__, instance_relative_config=True, instance_path=os.path.abspath(instance) if instance else None
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    default_db = "sqlite:///" + str(Path(app.instance_path) / "study_app.sqlite")
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev"),
        SQLALCHEMY_DATABASE_URI=_normalise_db_url(os.environ.get("DATABASE_URL", default_db)),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        # An active session inactive this long gives its list slot back.
        SESSION_TIMEOUT_S=int(os.environ.get("SESSION_TIMEOUT_S", 3600)),
        SESSIONS_PER_IP_PER_MINUTE=int(os.environ.get("SESSIONS_PER_IP_PER_MINUTE", 20)),
        PROLIFIC_REDIRECT=True,
        MEDIA_X_ACCEL_PREFIX=os.environ.get("MEDIA_X_ACCEL_PREFIX", ""),
        MAX_CONTENT_LENGTH=64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("SESSION_COOKIE_SECURE", "0") == "1",
        PERMANENT_SESSION_LIFETIME=timedelta(days=7),
        # Re-signing the cookie on every response costs more than the rest of an API call.
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_TIME_LIMIT=None,  # a participant may keep a page open for hours
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = _normalise_db_url(app.config["SQLALCHEMY_DATABASE_URI"])

    from study_app import admin, api, media, participant
    from study_app.cli import register_commands
    from study_app.db import init_app as init_db

    init_db(app)
    csrf.init_app(app)
    register_commands(app)
    app.register_blueprint(participant.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(admin.bp)
    app.jinja_env.filters["markdown"] = lambda text: Markup(_markdown.render(text or ""))
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(413, _too_large)
    return app


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if response.mimetype in ("text/html", "application/json"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
    if _wants_json():
        return jsonify(error=f"CSRF check failed: {exc.description}; reload the page"), 400
    return render_template(
        "message.html",
        heading="Please reload the page",
        text="Your page had expired. Reload it and try again.",
    ), 400


def _not_found(exc: Exception) -> ResponseReturnValue:
    if _wants_json():
        return jsonify(error="not found"), 404
    return render_template("message.html", heading="Not found", text="There is nothing at this address."), 404


def _too_large(exc: Exception) -> ResponseReturnValue:
    return jsonify(error="request too large"), 413


def _normalise_db_url(url: str) -> str:
    # Heroku-style postgres:// URLs and bare postgresql:// would pick psycopg2,
    # which is not installed; psycopg 3 is.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
