"""gunicorn settings for study_app (used by the benchmark and the production stack).

    gunicorn -c deploy/gunicorn.conf.py 'study_app:create_app()'

Every value can be overridden from the environment (GUNICORN_*), so one file
serves a laptop, the benchmark and a production host.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Requests spend most of their time waiting on PostgreSQL, so threads per worker
# (gthread) multiply concurrency cheaply; workers scale with the cores.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", 8))
# One pooled database connection per thread, kept open: with fewer, every request
# beyond the pool's size opened and closed a PostgreSQL connection (study_app.db).
os.environ.setdefault("DB_POOL_SIZE", str(threads))
# Answers are small and fast; a request running 30 s is stuck, not busy.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak can never take the study down.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 5000))
max_requests_jitter = 500
# preload_app stays off: each worker builds its own app and database pool after
# the fork (sharing a pool across fork breaks connections), and `kill -HUP`
# reloads new code without dropping requests.
preload_app = False
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
access_log_format = '%(h)s %({x-request-id}i)s "%(r)s" %(s)s %(b)s %(L)ss'
errorlog = "-"


def on_starting(server: object) -> None:
    """Refuse to serve without a real SECRET_KEY.

    Without one the app makes a random key in its instance folder, which is fine for one
    process but differs between hosts behind a load balancer, and "dev" (the old default)
    would let anyone forge a researcher's login cookie. gunicorn is the production
    server, so it is the place to insist.
    """
    from study_app.app import weak_secret_key

    key = os.environ.get("SECRET_KEY", "")
    if key and (weak := weak_secret_key(key)):
        raise SystemExit(weak)
    if not key:
        raise SystemExit(
            "SECRET_KEY is not set: export a long random value, the same on every host, e.g. "
            "SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))') (docs/deploy.md)"
        )
