"""The study-app commands as a researcher runs them: init-db, import, serve."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def test_import_then_serve_answers_participants(
    example_package: Path, tmp_path: Path, port: Any, wait_for: Any
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'study.sqlite'}",
        "SECRET_KEY": "a test key of 32 characters, ok!",
    }
    for args in (["init-db"], ["import", str(example_package)]):
        done = subprocess.run(
            [BIN / "study-app", *args], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in done.stdout  # the link to paste into Prolific
    server_port = port()
    server = subprocess.Popen(
        [BIN / "study-app", "serve", "--port", str(server_port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert (
            server.stdout.readline().strip()
            == f"participant entry (pilot): http://127.0.0.1:{server_port}/s/pilot"
        )
        page = wait_for(f"http://127.0.0.1:{server_port}/s/pilot")
        assert page.status_code == 200 and "I agree, start the study" in page.text
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_prolific_prints_the_form_values_and_the_url_reaches_consent(
    example_package: Path, tmp_path: Path, port: Any, wait_for: Any
) -> None:
    import json

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'study.sqlite'}",
        "SECRET_KEY": "a test key of 32 characters, ok!",
    }

    def study_app(*args: str) -> subprocess.CompletedProcess[str]:
        command = [BIN / "study-app", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    for args in (["init-db"], ["import", str(example_package), "--draft"]):
        assert study_app(*args).returncode == 0
    server_port = port()
    base = f"http://127.0.0.1:{server_port}"
    done = study_app("prolific", "pilot", "--base-url", base, "--json")
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp_path / "study.sqlite")) as con:
        stored = json.loads(con.execute("SELECT completion_codes FROM study").fetchone()[0])
    assert values["codes"] == {
        "completed": stored["complete"],
        "screened_out": stored["screened_out"],
        "declined": stored["declined"],
    }
    # Drawn at import, in no file of the package: nobody can compute them.
    package_text = "".join(p.read_text(errors="replace") for p in example_package.glob("*.json"))
    assert not any(code in package_text for code in stored.values())
    manifest = json.loads((example_package / "study.json").read_text())
    assert values["places"] == sum(lst["target_participants"] for lst in manifest["lists"])
    assert values["estimated_minutes"] >= 2
    # Not yet open, and plain http: both are said, on stderr, before anyone publishes.
    warnings = values["warnings"]
    assert any("open pilot" in w for w in warnings) and any("https" in w for w in warnings)

    # Prolific fills the placeholders; the filled URL starts a participant's consent page.
    url = values["study_url"]
    assert url.startswith(f"{base}/s/pilot?")
    pid = "5f0c3a1e2b4d6f8a9c0e1d2b"  # Prolific's ids: 24 hex digits
    filled = url.replace("{{%PROLIFIC_PID%}}", pid).replace("{{%STUDY_ID%}}", "a" * 24)
    filled = filled.replace("{{%SESSION_ID%}}", "b" * 24)
    assert study_app("open", "pilot").returncode == 0
    server = subprocess.Popen([BIN / "study-app", "serve", "--port", str(server_port)], env=env)
    try:
        page = wait_for(filled)
        assert page.status_code == 200 and "I agree, start the study" in page.text
        assert f'value="{pid}"' in page.text  # the id travels with the consent form
    finally:
        server.terminate()
        server.wait(timeout=10)

    text = study_app("prolific", "pilot", "--base-url", "https://study.example.org")
    assert text.returncode == 0 and "warning" not in text.stderr
    assert "https://study.example.org/s/pilot?PROLIFIC_PID={{%PROLIFIC_PID%}}" in text.stdout
    bad = study_app("prolific", "pilot", "--base-url", "study.example.org")
    assert bad.returncode == 2 and "--base-url" in bad.stderr
