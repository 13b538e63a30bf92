"""The study-app commands as a researcher runs them: init-db, import, serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def test_import_then_serve_answers_participants(
    example_package: Path, tmp_path: Path, port: Any, wait_for: Any
) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'study.sqlite'}", "SECRET_KEY": "t"}
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
