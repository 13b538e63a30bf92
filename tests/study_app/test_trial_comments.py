"""Issue 36: an optional comment box under every trial, when the researcher asks for one
(``trial_comments = true`` under ``[study]``). The comment travels with the answer, is
stored once (a retried submit does not duplicate or change it) and is exported beside
the answer; a study without the box refuses comments, and nothing longer than 500
characters is stored. On SQLite and PostgreSQL (the answer is one INSERT on both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from artifact_schemas import RESPONSES, load_key, load_table
from tests.study_app.conftest import Participant


@pytest.fixture(scope="module")
def comments_package(example_run: Path, write_config: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stimuli_builder.build import build_package

    root = tmp_path_factory.mktemp("comments")
    config = write_config(root / "config", **{"seed = 3\n": "seed = 3\ntrial_comments = true\n"})
    build_package(config, example_run, root / "pilot")
    return root / "pilot"


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_comment_is_stored_once_and_exported_beside_its_answer(
    request: pytest.FixtureRequest, db: str, comments_package: Path, tmp_path: Path
) -> None:
    app: Flask = request.getfixturevalue("app" if db == "sqlite" else "pg_app")
    with app.app_context():
        assert app.test_cli_runner().invoke(args=["import", str(comments_package)]).exit_code == 0
    p = Participant(app, "pilot", load_key(comments_package / "key.json"))
    p.enter()
    p.post_stage("volume")
    page = p.go().get_data(as_text=True)
    assert '<textarea id="comment"' in page and "Your comment on this trial (optional)" in page

    first = p.trial()
    refused = p.answer(first, comment="x" * 501)
    assert refused.status_code == 400 and "comment" in refused.get_json()["error"]
    assert p.answer(first, comment=7).status_code == 400
    formula = "=1+1 the second clip clicks"
    assert p.answer(first, key="retry-0001", comment=f"  {formula}  ").status_code == 200
    again = p.answer(first, key="retry-0001", comment="changed on the retry")  # the same submit again
    assert again.status_code == 200 and again.get_json()["duplicate"]
    second = p.trial()
    assert p.answer(second, comment="   ").status_code == 200  # an empty box is no comment

    out = tmp_path / "responses.csv"
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["export", "pilot", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = load_table(out, RESPONSES).set_index("trial_id")
    assert rows.loc[first["trial"]["id"], "comment"] == formula
    assert rows.loc[second["trial"]["id"], "comment"] is None
    # A spreadsheet would run "=1+1...": in the file the cell starts with a quote, read back without.
    assert f"'{formula}" in out.read_text()


def test_a_study_without_the_box_shows_none_and_refuses_comments(participant: Participant) -> None:
    participant.enter()
    participant.post_stage("volume")
    assert 'id="comment"' not in participant.go().get_data(as_text=True)
    trial = participant.trial()
    refused = participant.answer(trial, comment="hello")
    assert refused.status_code == 400 and "trial_comments" in refused.get_json()["error"]
    assert participant.answer(trial).status_code == 200
