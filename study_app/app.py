"""The application factory."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from flask_wtf.csrf import CSRFError, CSRFProtect
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from artifact_schemas.study import N_
from study_app import admin, api, i18n, media, participant
from study_app.commands import participants as participant_commands
from study_app.commands import study as study_commands
from study_app.db import db
from study_app.db import init_app as init_db
from study_app.prolific.commands import prolific_command

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
        SECRET_KEY=os.environ.get("SECRET_KEY") or None,
        SQLALCHEMY_DATABASE_URI=_normalise_db_url(os.environ.get("DATABASE_URL", default_db)),
        # PostgreSQL connections idle for a while are pinged before use (db.PING_AFTER_IDLE_S).
        # An active session inactive this long gives its list slot back.
        SESSION_TIMEOUT_S=int(os.environ.get("SESSION_TIMEOUT_S", 3600)),
        # A session before its first trial (consent, volume, screening, instructions) counts
        # against its list only while it moves at least this often; it holds no place.
        SETUP_TIMEOUT_S=int(os.environ.get("SETUP_TIMEOUT_S", 600)),
        SESSIONS_PER_IP_PER_MINUTE=int(os.environ.get("SESSIONS_PER_IP_PER_MINUTE", 20)),
        # The trial runner sends a few events a minute (tab hidden, retries); 3000 in 23 s
        # from one session was a flood into the researcher's table (issue 16.11).
        EVENTS_PER_SESSION_PER_MINUTE=int(os.environ.get("EVENTS_PER_SESSION_PER_MINUTE", 60)),
        # An answer sooner than LISTEN_FACTOR x the trial's audio duration after the trial was
        # served is refused (425). 0 turns the check off (bots in a pilot; the tests).
        LISTEN_FACTOR=float(os.environ.get("LISTEN_FACTOR", 0.9)),
        # Proxies in front of the app (nginx: 1) whose X-Forwarded-For/-Proto to believe.
        # 0 believes none: a header the client sets itself must not dodge the limits.
        TRUSTED_PROXIES=int(os.environ.get("TRUSTED_PROXIES", 0)),
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
        # Flask-WTF's HTTPS-only check wants a Referer, which a privacy-minded browser or
        # policy withholds: behind TLS it refused every POST (issue 31.1). The token stays;
        # the same-origin check is _refuse_cross_origin's (Fetch Metadata, then Origin).
        WTF_CSRF_SSL_STRICT=False,
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)
    app.config["SQLALCHEMY_DATABASE_URI"] = _normalise_db_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path))
    weak = weak_secret_key(str(app.config["SECRET_KEY"]))
    if weak and not app.testing:
        # Checked here, not in one command: `study-app run` (Flask's own) and any WSGI
        # server build the app through this factory (issue 31.7).
        raise UnsafeConfig(weak)

    init_db(app)
    app.session_interface = _SessionCookies()
    app.wsgi_app = _TrustedProxies(app)  # type: ignore[method-assign]
    csrf.init_app(app)
    i18n.init_app(app)
    for command in (*study_commands.COMMANDS, *participant_commands.COMMANDS, prolific_command):
        app.cli.add_command(command)
    app.register_blueprint(participant.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(admin.bp)
    # Browsers ask for /favicon.ico whatever the pages link (a 404 in every log, issue 37).
    app.add_url_rule(
        "/favicon.ico",
        "favicon",
        lambda: app.send_static_file("favicon.svg"),
    )
    app.jinja_env.filters["markdown"] = lambda text: Markup(_markdown.render(text or ""))
    app.before_request(_refuse_cross_origin)
    app.before_request(_refuse_control_characters)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(InterfaceError, _database_unavailable)
    app.register_error_handler(404, _not_found)
    app.register_error_handler(413, _too_large)
    return app


class _SessionCookies(SecureCookieSessionInterface):
    """Flask's signed session cookie, its serializer built once per key rather than on every
    request (Flask makes a new one each time: 2% of a trial fetch's CPU, issue 31 profile).
    A changed SECRET_KEY or SECRET_KEY_FALLBACKS builds a new one."""

    _cached: tuple[object, Any] | None = None

    def get_signing_serializer(self, app: Flask) -> Any:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = self._cached = (key, super().get_signing_serializer(app))
        return cached[1]


class _TrustedProxies:
    """werkzeug's ProxyFix for ``TRUSTED_PROXIES`` hops, read per request so tests can set it.

    Behind nginx every request comes from 127.0.0.1; without this the per-address session
    limit counted all participants as one (issue 16.4). nginx appends the client's address
    to X-Forwarded-For, so trusting exactly one hop takes that one, never a forged value.
    """

    def __init__(self, app: Flask) -> None:
        self._app, self._inner = app, app.wsgi_app
        self._fixed: dict[int, ProxyFix] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        hops = int(self._app.config["TRUSTED_PROXIES"])
        if hops <= 0:
            return self._inner(environ, start_response)
        fix = self._fixed.get(hops)
        if fix is None:
            fix = self._fixed[hops] = ProxyFix(self._inner, x_for=hops, x_proto=hops)
        return fix(environ, start_response)


# Every response carries these unless its view set its own. "same-origin", not
# "no-referrer": no other site ever sees a URL of ours (they carry Prolific ids), while our
# own POSTs keep a real Origin header; under "no-referrer" browsers send "Origin: null" on
# every form POST (Fetch standard, "serializing a request origin"), which left nothing to
# check the origin by.
_SECURITY_HEADERS = tuple(
    (name, name.lower(), value)
    for name, value in (
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
    )
)


def _security_headers(response: Response) -> Response:
    # One pass over the response's headers, not a setdefault per header (each scans them
    # all, lower-casing every name): 4% of a trial fetch's CPU in the issue 31 profile.
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    for name, lower, value in _SECURITY_HEADERS:
        if lower not in present:
            headers.add(name, value)
    if "cache-control" not in present and response.mimetype in ("text/html", "application/json"):
        headers.add("Cache-Control", "no-store")
    return response


_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _refuse_cross_origin() -> ResponseReturnValue | None:
    """403 for a state-changing request another site's page made (defence in depth).

    The CSRF token is the main defence. This is the check OWASP's CSRF cheat sheet
    recommends beside it, in the form Go 1.25's CrossOriginProtection uses: browsers
    since 2023 send ``Sec-Fetch-Site``, which a page cannot forge, so it decides alone;
    an older browser is judged by ``Origin`` against the host it asked for. A request
    with neither header comes from no browser (curl, the bots), so there is no victim's
    cookie to abuse, and the token alone applies. The Referer is never required: the
    strict referrer check this replaces refused every POST over HTTPS (issue 31.1).
    """
    if request.method not in _UNSAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site in ("same-origin", "none"):
            return None
        return _cross_origin(f"the request came from another site (Sec-Fetch-Site: {site})")
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    # Hosts only, as Go does: behind a proxy the app may not know the scheme the browser
    # used. request.host is what the browser asked for (nginx passes $http_host).
    asked = _origin_host(f"{urlsplit(origin).scheme}://{request.host}")
    if asked is not None and _origin_host(origin) == asked:
        return None
    return _cross_origin("the request came from another site (Origin does not match)")


def _origin_host(origin: str) -> str | None:
    """``host[:port]`` of an Origin header, default port dropped; None for "null"."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
    return host if port in (None, default) else f"{host}:{port}"


def _cross_origin(reason: str) -> ResponseReturnValue:
    current_app.logger.warning("refused %s %s: %s", request.method, request.path, reason)
    return _refuse(
        403,
        f"refused: {reason}",
        N_("This request was refused"),
        N_("It came from another website. Open the study from its own address and try again."),
    )


def _refuse(status: int, error: str, heading: str, text: str) -> ResponseReturnValue:
    """``{"error": error}`` to the trial runner (``/api/``), the message page to a person."""
    if request.path.startswith("/api/"):
        return jsonify(error=error), status
    return render_template("message.html", heading=gettext(heading), text=gettext(text)), status


def _bad_input(message: str) -> ResponseReturnValue:
    return _refuse(400, message, N_("This address is not valid"), message)


def _refuse_control_characters() -> ResponseReturnValue | None:
    """400 for a NUL (or, in URL values, any control character) anywhere a request puts text.

    PostgreSQL text cannot hold NUL: a ``%00`` in the path, STUDY_ID or a form field was an
    HTTP 500 there (issue 16.10). JSON bodies are checked where they are parsed (api.json_body).
    """
    if any(ord(ch) < 32 for ch in request.path):
        return _bad_input(N_("The address contains control characters."))
    values = [v for vs in request.args.listvalues() for v in vs]
    values.append(request.headers.get("User-Agent", ""))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += [v for vs in request.form.listvalues() for v in vs]
    if any("\x00" in v for v in values):
        return _bad_input(N_("A value in this request contains a NUL character."))
    return None


def _database_unavailable(exc: Exception) -> ResponseReturnValue:
    """A friendly 503 when the database is down or its disk is full (never a bare 500).

    Nothing is lost: an answer's transaction either committed or rolled back, and the
    trial runner retries a 503 with the same idempotency key until it is stored.
    """
    db.session.rollback()
    current_app.logger.error("database unavailable: %s", exc)
    response = current_app.make_response(
        _refuse(
            503,
            "the study server cannot reach its database; retrying is safe",
            N_("Please try again in a minute"),
            N_(
                "The study server has a problem right now. Your answers so far are saved. "
                "Reload this page in a minute to continue where you were."
            ),
        )
    )
    response.headers["Retry-After"] = "30"
    return response


def _csrf_error(exc: CSRFError) -> ResponseReturnValue:
    return _refuse(
        400,
        f"CSRF check failed: {exc.description}; reload the page",
        N_("Please reload the page"),
        N_("Your page had expired. Reload it and try again."),
    )


def _not_found(exc: Exception) -> ResponseReturnValue:
    return _refuse(404, "not found", N_("Not found"), N_("There is nothing at this address."))


def _too_large(exc: Exception) -> ResponseReturnValue:
    return jsonify(error="request too large"), 413


class UnsafeConfig(RuntimeError):
    """A setting the app refuses to run with; the message names it and what to do."""


# Keys from tutorials and templates: a cookie signed with one of them is a login anyone can make.
_WELL_KNOWN_KEYS = frozenset({"dev", "development", "secret", "secret-key", "changeme", "change-me", "test"})
MIN_SECRET_KEY_LENGTH = 16


def weak_secret_key(key: str) -> str | None:
    """Why ``key`` must not sign cookies (None when it may); the message says what to do."""
    advice = (
        "Unset it (a random key is then kept in the instance folder) or set a long random value: "
        "SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))') (docs/deploy.md)"
    )
    if key.strip().lower() in _WELL_KNOWN_KEYS:
        return f"SECRET_KEY={key} is a well-known placeholder: anyone could forge a login with it. {advice}"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"SECRET_KEY is {len(key)} characters; at least {MIN_SECRET_KEY_LENGTH} are needed. {advice}"
    return None


def _instance_secret(instance: Path) -> str:
    """A random key kept in ``instance/secret_key`` (made once, mode 600) when SECRET_KEY is unset.

    The old fallback was the string "dev": anyone could forge a researcher's login cookie and
    reverse the IP hashes (issue 16.7). The file keeps logins valid across restarts of
    ``study-app serve``; several hosts must still share one SECRET_KEY (gunicorn insists).
    """
    path = instance / "secret_key"
    if not path.is_file():
        tmp = instance / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic and exclusive: two workers starting at once agree
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _normalise_db_url(url: str) -> str:
    # Heroku-style postgres:// URLs and bare postgresql:// would pick psycopg2,
    # which is not installed; psycopg 3 is.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
