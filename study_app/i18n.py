"""What the app says to participants, in the study's language (Flask-Babel).

Pages, buttons and messages come from this package's catalog
(``translations/<language>/LC_MESSAGES/messages.po``, compiled to ``.mo`` by ``make
translations``). A study's pages are in its package's ``language`` (the researcher wrote
consent, instructions and questions in it); a page of no study (the index, an unknown
address) follows the browser's Accept-Language among the shipped languages.

The trial runner (``static/study.js``) says its words through ``_("...")`` too: Babel's
JavaScript extractor reads them from the file into the same catalog, and each page
carries their translations as JSON (``strings``), so the script needs no catalog loader.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel import Locale
from babel.messages.extract import extract_from_file
from flask import Flask, g, request
from flask_babel import Babel, get_locale, gettext
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from artifact_schemas.study import LANGUAGES
from study_app.db import db
from study_app.packages import package_view
from study_app.participant import study_ref

SCRIPT = Path(__file__).parent / "static" / "study.js"


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=select_locale)
    app.context_processor(_page_language)
    # A translated sentence may hold markup the template supplies (a <strong> word, a
    # <code> command) as a %(name)s value: Markup, so that autoescape leaves it whole.
    app.jinja_env.globals["Markup"] = Markup


def select_locale() -> str:
    """The study's language on its pages; otherwise the browser's, among the shipped ones."""
    if request.blueprint == "admin":
        return "en"  # the researcher's pages are not translated: no lang="de" on English text
    slug = (request.view_args or {}).get("slug")
    language = study_language(slug) if isinstance(slug, str) else None
    return language or request.accept_languages.best_match(LANGUAGES) or "en"


def study_language(slug: str) -> str | None:
    """The language of study ``slug``'s package (None: no such study, or no database now)."""
    if "study_language" not in g:
        try:
            ref = study_ref(slug)
            g.study_language = package_view(ref).manifest.language if ref else None
        except SQLAlchemyError:
            # The page saying the database is down must still render (app._database_unavailable).
            db.session.rollback()
            g.study_language = None
    return g.study_language


@cache
def script_messages() -> tuple[str, ...]:
    """The texts study.js passes to ``_()``, read from the script as the catalog is."""
    found = extract_from_file("javascript", str(SCRIPT), keywords={"_": None})
    # Only single texts: the script has no plural forms (a tuple would be one).
    return tuple(dict.fromkeys(m for _line, m, _comments, _context in found if isinstance(m, str)))


def _page_language() -> dict[str, object]:
    locale = get_locale() or Locale("en")
    return {
        "language": str(locale),
        "direction": locale.text_direction,
        "strings": {text: gettext(text) for text in script_messages()},
    }
