"""A private PostgreSQL cluster the stack test may restart, and helpers to run nginx."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class PrivatePostgres:
    """A throwaway cluster (initdb) on a loopback port, owned by the postgres user."""

    data: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._ctl("-o", opts, "-l", str(self.data / "log"), "start")

    def restart(self) -> None:
        self._ctl("-m", "fast", "stop")
        self.start()

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


@pytest.fixture
def private_postgres(
    tmp_path_factory: pytest.TempPathFactory, need_service: Any, port: Any
) -> Iterator[PrivatePostgres]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins or shutil.which("runuser") is None or os.geteuid() != 0:
        need_service("PostgreSQL server binaries and root (to run them as user postgres) are needed")
    bin_dir = Path(bins[-1]).parent
    # Outside pytest's 0700 temp root, which user postgres cannot enter.
    base = Path(tempfile.mkdtemp(prefix="mc-pg-"))
    os.chmod(base, 0o755)
    data = base / "data"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    pg = PrivatePostgres(data, port(), bin_dir)
    pg.start()
    for _ in range(50):
        if (
            subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg.port)], capture_output=True
            ).returncode
            == 0
        ):
            break
        time.sleep(0.1)
    yield pg
    pg.stop()
    shutil.rmtree(base, ignore_errors=True)


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def nginx_conf(need_service: Any) -> Any:
    """``nginx_conf(tmp, app, studies, port)``: write a full nginx.conf around deploy/nginx/study.conf."""
    if not Path(NGINX).exists():
        need_service("nginx is not installed (bash tests/ensure_services.sh installs it)")
    return render_nginx


def render_nginx(tmp: Path, app: str, studies: Path, port: int) -> Path:
    """A complete nginx.conf around deploy/nginx/study.conf, for a non-root run on ``port``."""
    site = (Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "study.conf").read_text()
    site = (
        site.replace("@SERVER_NAME@", "localhost")
        .replace("@LISTEN@", f"127.0.0.1:{port}")
        .replace("@APP@", app)
        .replace("@STUDIES@", str(studies))
        .replace("@TLS_CERT@", "")
        .replace("@TLS_KEY@", "")
        .replace("@HSTS@", "")
    )
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    # The test runs as root with files under pytest's private temp dir; nginx workers
    # would otherwise drop to a user that cannot read them. Production runs as www-data.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
{site}
}}
""")
    return conf
