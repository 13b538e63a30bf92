"""A private PostgreSQL cluster the stack test may restart, and helpers to run nginx."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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


@dataclass
class Stack:
    """gunicorn (deploy config) behind nginx (the shipped site), both running."""

    url: str
    env: dict[str, str]  # what the app runs with: `study-app` commands take the same
    gunicorn: subprocess.Popen[bytes]
    client: httpx.Client  # trusts the stack's certificate under TLS


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ]
    command += [
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(cert),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


@pytest.fixture
def production_stack(private_postgres: PrivatePostgres, nginx_conf: Any, port: Any, server_dir: Path) -> Any:
    """``with production_stack(package, env, tls=False) as stack:`` the documented deployment.

    The package is initialised and imported into the private PostgreSQL, as ``study-app``
    does on a server; nginx sends the audio (X-Accel) and the app trusts its one hop. Under
    ``tls`` nginx listens with a certificate made here and sends HSTS. The stack is ready
    when its health check answers 200 through nginx (a 502 means gunicorn is still starting).
    """

    @contextlib.contextmanager
    def start(package: Path, env: dict[str, str], tls: bool = False) -> Iterator[Stack]:
        env = {
            **os.environ,
            "DATABASE_URL": private_postgres.url,
            "MEDIA_X_ACCEL_PREFIX": "/_audio",
            "TRUSTED_PROXIES": "1",
            "GUNICORN_ACCESSLOG": "/dev/null",
            **env,
        }
        for args in (["init-db"], ["import", str(package)]):
            subprocess.run([BIN / "study-app", *args], env=env, check=True, capture_output=True)
        cert = _self_signed(server_dir) if tls else None
        app_port, web_port = port(), port()
        conf = nginx_conf(server_dir / "nginx", f"127.0.0.1:{app_port}", package.parent, web_port, tls=cert)
        check = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, check=False)
        assert check.returncode == 0 and "test is successful" in check.stderr, check.stderr
        gunicorn = subprocess.Popen(
            [BIN / "gunicorn", "-c", ROOT / "deploy" / "gunicorn.conf.py", "study_app:create_app()"],
            env={**env, "GUNICORN_BIND": f"127.0.0.1:{app_port}"},
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        nginx = subprocess.Popen([NGINX, "-c", str(conf)], stderr=subprocess.DEVNULL)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{web_port}"
        verify = ssl.create_default_context(cafile=str(cert[0])) if cert else True
        try:
            with httpx.Client(base_url=url, verify=verify, timeout=60) as client:
                for _ in range(600):  # a deadline against a hang, not a timing
                    try:
                        if client.get("/api/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                else:
                    raise AssertionError(f"{url}/api/health never answered 200")
                yield Stack(url, env, gunicorn, client)
        finally:
            nginx.terminate()
            gunicorn.terminate()
            gunicorn.wait(timeout=30)
            nginx.wait(timeout=10)

    return start
