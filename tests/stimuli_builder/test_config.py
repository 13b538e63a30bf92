"""The study config: clear errors for unknown keys and wrong types; the documented example is valid."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest
from typer.testing import CliRunner

from stimuli_builder.cli import app
from stimuli_builder.config import StudyConfig, load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "study-config.md"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("lists.colour", "no such field (check its spelling against docs/study-config.md)"),
        ("label_validation.per_list", "valid integer"),
        ("audio.format", "'flac', 'wav' or 'mp3'"),
    ],
)
def test_bad_config_exits_naming_key_and_expected_type(
    example_run: Path, tmp_path: Path, write_config: Any, field: str, expected: str
) -> None:
    replace = {}
    if field == "label_validation.per_list":
        replace["per_list = 4"] = 'per_list = "four"'
    if field == "audio.format":
        replace["sample_rate = 16000"] = 'sample_rate = 16000\nformat = "ogg"'
    if field == "lists.colour":
        replace["count = 4"] = "count = 4\ncolour = 'red'"
    config = write_config(tmp_path, **replace)
    code, output = _run("build", str(config), "--bundle", str(example_run), "--out", str(tmp_path / "s"))
    assert code == 1
    flat = " ".join(output.split())
    assert f"field '{field}'" in flat and expected in flat, output
    assert not (tmp_path / "s").exists()


def test_missing_text_file_is_named(tmp_path: Path, write_config: Any) -> None:
    config = write_config(tmp_path, **{'consent = "consent.md"': 'consent = "nope.md"'})
    with pytest.raises(ValueError, match=r"study\.consent.*nope\.md"):
        load_config(config)


# Keys whose value must be secret: an example value would be copied into real studies.
SECRET_KEYS = {("study", "salt")}


def test_documented_example_is_complete_and_valid() -> None:
    """The complete example of a study of SAE features and the one of your own clips
    (issue 36) are valid configs, and between them name every key of every section."""
    text = DOC.read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) == 2, "docs/study-config.md has two ```toml examples"
    examples = [tomllib.loads(block) for block in blocks]
    for example in examples:
        StudyConfig.model_validate(example)  # raises if the example is wrong
    assert "stimuli" not in examples[0] and "stimuli" in examples[1]

    for section, model in StudyConfig.model_fields.items():
        written = [e[section] for e in examples if section in e]
        assert written, f"the examples lack [{section}]"
        sub = next(arg for arg in get_args(model.annotation) or [model.annotation] if arg is not type(None))
        for key in sub.model_fields:
            if (section, key) in SECRET_KEYS:  # in a comment of the example only
                assert f"# {key} = " in blocks[0], f"the example does not mention {section}.{key}"
                continue
            assert any(key in w for w in written), f"the examples lack {section}.{key}"
