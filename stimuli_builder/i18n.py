"""What the builder writes for participants, in the study's language.

The question texts, scale labels, headphone-check items and clip names the builder
writes into ``study.json`` are English in the code, marked with ``artifact_schemas.study.N_`` so that Babel's
extractor finds them (``make translations``), and translated from this package's
catalog (``translations/<language>/LC_MESSAGES/messages.po``) when a trial is written
(``package._trial``). A text the researcher wrote in the config is not in the catalog
and passes through unchanged, so only the defaults are translated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from babel.support import NullTranslations, Translations

CATALOGS = Path(__file__).parent / "translations"


@lru_cache(maxsize=8)
def _translations(language: str) -> NullTranslations:
    if language == "en":
        return NullTranslations()
    found = Translations.load(str(CATALOGS), [language])
    if not isinstance(found, Translations):  # Babel falls back to no translation silently
        raise FileNotFoundError(f"no catalog for language {language!r} in {CATALOGS}")
    return found


def translator(language: str) -> Callable[[str], str]:
    """``gettext`` of ``language`` (English: the text itself)."""
    return _translations(language).gettext
