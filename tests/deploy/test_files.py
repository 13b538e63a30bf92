"""The shipped deployment files are well formed (nginx -t; YAML; units; shell syntax)."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_nginx_config_passes_nginx_t(nginx_conf: Any, tmp_path: Path) -> None:
    conf = nginx_conf(tmp_path, "127.0.0.1:8000", tmp_path / "studies", 8080)
    done = subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr


def test_render_script_fills_every_placeholder(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            DEPLOY / "render-nginx.sh",
            "study.example.org",
            "443 ssl",
            "127.0.0.1:8000",
            "/srv/studies",
            "/etc/cert.pem",
            "/etc/key.pem",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "@" not in re.sub(r"#.*", "", done.stdout)
    assert "ssl_certificate /etc/cert.pem;" in done.stdout and "alias /srv/studies/;" in done.stdout
    # Issue 16.11: HSTS under TLS, on nginx's own answers (audio included) as well.
    hsts = 'add_header Strict-Transport-Security "max-age=31536000" always;'
    assert re.sub(r"#.*", "", done.stdout).count(hsts) == 2
    plain = subprocess.run(
        [DEPLOY / "render-nginx.sh", "study.example.org", "80", "127.0.0.1:8000", "/srv/studies"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = re.sub(r"#.*", "", plain.stdout)
    assert "Strict-Transport-Security" not in config and "@" not in config


def test_compose_and_dockerfile_are_consistent() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"db", "app", "nginx"}
    build = compose["services"]["app"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
    docker = (DEPLOY / "Dockerfile").read_text()
    assert docker.lstrip().startswith(("#", "FROM")) and re.search(r"^FROM \S+", docker, re.M)
    assert re.search(r"^CMD \[", docker, re.M)
    for src in re.findall(r"^COPY (\S+) ", docker, re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    assert "deploy/gunicorn.conf.py" in docker


def test_systemd_units_parse_and_point_at_shipped_files() -> None:
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(unit.read_text())
        assert parser.sections()[0] == "Unit", unit.name
        assert {"Service", "Timer"} & set(parser.sections()), unit.name
        for path in re.findall(r"/srv/study-app/(deploy/[\w./-]+)", unit.read_text()):
            assert (ROOT / path).exists(), f"{unit.name} names missing {path}"


def test_shell_scripts_have_valid_syntax_and_usage() -> None:
    for script in ("backup.sh", "restore.sh", "render-nginx.sh"):
        subprocess.run(["bash", "-n", DEPLOY / script], check=True)
        usage = subprocess.run([DEPLOY / script], capture_output=True, text=True, check=False)
        assert usage.returncode == 2 and "usage:" in usage.stderr
    bad = subprocess.run(
        [DEPLOY / "backup.sh", "mysql://x", "/tmp/x"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "postgresql://" in bad.stderr


def test_gunicorn_refuses_to_start_without_a_secret_key(tmp_path: Path, port: Any) -> None:
    import os
    import sys

    gunicorn = Path(sys.executable).parent / "gunicorn"
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env |= {"GUNICORN_BIND": f"127.0.0.1:{port()}", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    expected = {None: "SECRET_KEY is not set", "dev": "well-known placeholder", "s3cr3t": "at least 16"}
    for key, message in expected.items():
        run_env = env if key is None else {**env, "SECRET_KEY": key}
        done = subprocess.run(
            [gunicorn, "-c", DEPLOY / "gunicorn.conf.py", "study_app:create_app()"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
