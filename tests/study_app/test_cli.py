"""The study-app commands as a researcher runs them: init-db, import, serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def test_import_then_serve_answers_participants(example_package: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'study.sqlite'}", "SECRET_KEY": "t"}
    for args in (["init-db"], ["import", str(example_package)]):
        done = subprocess.run(
            [BIN / "study-app", *args], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}" in done.stdout  # the link to paste into Prolific
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [BIN / "study-app", "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert (
            server.stdout.readline().strip() == f"participant entry (pilot): http://127.0.0.1:{port}/s/pilot"
        )
        for _ in range(100):
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/s/pilot", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert page.status_code == 200 and "I agree, start the study" in page.text
    finally:
        server.terminate()
        server.wait(timeout=10)
