"""`study-app simulate --chaos` against gunicorn (deploy config) and PostgreSQL: nothing lost or doubled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_chaos_bots_through_gunicorn_on_postgres(
    pg_app: Flask, postgres_url: str, demo_package: Path, port: Any, wait_for: Any
) -> None:
    with pg_app.app_context():
        assert pg_app.test_cli_runner().invoke(args=["import", str(demo_package)]).exit_code == 0
    server_port = port()
    env = {
        **os.environ,
        "DATABASE_URL": postgres_url,
        "SECRET_KEY": "stack-test key of 32 characters ok",
        "SESSIONS_PER_IP_PER_MINUTE": "100000",
        "GUNICORN_BIND": f"127.0.0.1:{server_port}",
        "GUNICORN_WORKERS": "3",
        "GUNICORN_ACCESSLOG": "/dev/null",
    }
    server = subprocess.Popen(
        [BIN / "gunicorn", "-c", ROOT / "deploy" / "gunicorn.conf.py", "study_app:create_app()"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{server_port}"
        assert wait_for(url + "/api/health").json()["database"] == "postgresql"
        done = subprocess.run(
            [
                BIN / "study-app",
                "simulate",
                "demo",
                "--url",
                url,
                "--participants",
                "20",
                "--concurrency",
                "8",
                "--accuracy",
                "0.8",
                "--steer-accuracy",
                "0.6",
                "--fail-screening",
                "0.1",
                "--chaos",
                "--seed",
                "3",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"sent=(\d+) stored=(\d+) duplicates=(\d+)", done.stdout)
    assert match, done.stdout
    sent, stored, duplicates = map(int, match.groups())
    assert sent == stored > 200 and duplicates == 0
    marked = re.search(r"(\d+) sessions marked simulated", done.stdout)
    assert marked and int(marked[1]) >= 20, done.stdout  # every bot's session, retakes included
    assert re.search(r"chaos: [1-9]\d* reloads, [1-9]\d* dropped connections, [1-9]\d* repeated", done.stdout)
