"""Each shipped language's catalogs translate everything the software says to participants.

The texts are extracted from the code as `make translations` does (Babel, each package's
babel.cfg), so a text added to a template, to study.js or to the builder without a
translation fails here, not in front of a participant.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from artifact_schemas.study import LANGUAGES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("study_app", "stimuli_builder")
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]
# What a translation must keep as it is: {name}, %(name)s and HTML tags.
KEPT = re.compile(r"\{\w+\}|%\(\w+\)s|</?\w+>")


def marked_texts(package: str) -> set[str]:
    """The texts the package's code marks for translation, as pybabel extract reads them."""
    root = ROOT / package
    with open(root / "babel.cfg", encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {"_": None, "gettext": None, "N_": None}
    found = extract_from_dir(str(root), method_map, options_map, keywords=keywords)
    return {message for _file, _line, message, _comments, _context in found if isinstance(message, str)}


def catalog(package: str, language: str, suffix: str) -> dict[str, str]:
    path = ROOT / package / "translations" / language / "LC_MESSAGES" / f"messages.{suffix}"
    with open(path, "rb") as f:
        read = read_po(f) if suffix == "po" else read_mo(f)
    return {str(m.id): str(m.string) for m in read if m.id and not m.fuzzy}


def test_the_code_marks_what_participants_read() -> None:
    """The extraction is not empty by accident: texts from each kind of source are there."""
    app = marked_texts("study_app")
    assert {"I agree, start the study", "Trial {n} of {total}", "This study is full"} <= app  # html, js, py
    assert "Please listen to every clip to the end before answering." in app  # answers.py
    builder = marked_texts("stimuli_builder")
    assert {"The first sound", "Which one is X: A or B?", "Bad", "Clip A"} <= builder


@pytest.mark.parametrize("language", TRANSLATED)
@pytest.mark.parametrize("package", PACKAGES)
def test_catalog_translates_every_marked_text(package: str, language: str) -> None:
    texts = marked_texts(package)
    po = catalog(package, language, "po")
    missing = sorted(t for t in texts if not po.get(t))
    where = f"{package}/translations/{language}"
    assert not missing, f"{where}: no translation of {missing[:5]} (make translations)"
    for text in texts:
        assert sorted(KEPT.findall(po[text])) == sorted(KEPT.findall(text)), (text, po[text])
    # The compiled catalog the app reads is the .po as it is now.
    assert catalog(package, language, "mo") == po, f"{package}: run make translations to compile the .mo"


@pytest.mark.parametrize("language", TRANSLATED)
def test_clip_names_agree_between_the_builder_and_the_page(language: str) -> None:
    """The options a comparison offers ("Clip A") name the players the page draws."""
    builder, app = catalog("stimuli_builder", language, "po"), catalog("study_app", language, "po")
    for letter in "ABC":
        assert builder[f"Clip {letter}"] == app["Clip {letter}"].replace("{letter}", letter)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_language_has_its_spoken_attention_check(language: str) -> None:
    voice = ROOT / "stimuli_builder" / "voice" / language
    assert (voice / "instruction.flac").is_file()
    numbers = sorted(p.name for p in voice.glob("number-*.flac"))
    assert numbers == sorted(f"number-{n}.flac" for n in range(1, 11))
