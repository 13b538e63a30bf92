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

ROOT = Path(__file__).resolve().parents[2]


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
    """``nginx_conf(tmp, app, studies, port, tls=None)``: a full nginx.conf around the shipped site."""
    if not Path(NGINX).exists():
        need_service("nginx is not installed (bash tests/ensure_services.sh installs it)")
    return render_nginx


def render_nginx(tmp: Path, app: str, studies: Path, port: int, tls: tuple[Path, Path] | None = None) -> Path:
    """A complete nginx.conf around the site ``deploy/render-nginx.sh`` renders, on ``port``.

    ``tls`` is (certificate, key): the site then listens with ``ssl`` and sends HSTS, as
    in production. Workers run as www-data, as Debian's nginx does, so a study package
    they cannot read fails here as it would on a server (issue 31.6).
    """
    listen = f"127.0.0.1:{port}" + (" ssl" if tls else "")
    args = ["localhost", listen, app, str(studies), *(str(p) for p in tls or ())]
    site = subprocess.run(
        ["bash", str(ROOT / "deploy" / "render-nginx.sh"), *args], capture_output=True, text=True, check=True
    ).stdout
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    user = "user www-data;" if os.geteuid() == 0 else ""
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


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A directory like /srv: outside pytest's 0700 temp root, which www-data cannot enter.

    Only this directory is opened up; what the tests build inside keeps the modes its
    command gave it (no chmod of a study package: issue 31.6).
    """
    base = Path(tempfile.mkdtemp(prefix="mc-srv-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def served_demo(server_dir: Path, example_run: Path) -> Path:
    """The demo study built by ``stimuli-builder build`` into ``<server_dir>/studies/demo``."""
    from stimuli_builder.build import build_package

    out = server_dir / "studies" / "demo"
    out.parent.mkdir(mode=0o755)
    build_package(ROOT / "examples" / "demo-study" / "study.toml", example_run, out)
    return out
