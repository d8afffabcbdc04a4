"""Real servers for tests and benchmarks: the ASGI app and a Celery worker as subprocesses.

Used by the pytest fixtures in conftest.py and by the bench/ scripts, so both measure the
same thing: our code running as it runs in production, reached over real sockets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parent.parent


def inside_one_minute(needed: float = 10.0) -> None:
    """Rate-limit windows are calendar minutes: sleeps, if need be, so that the next `needed`
    seconds are inside one and a test's counts are not split by a rollover."""
    into_minute = time.time() % 60
    if into_minute > 60 - needed:
        time.sleep(60.5 - into_minute)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for(settings_db: Mapping[str, object]) -> str:
    """A DATABASE_URL for Django's current default database (e.g. the test database)."""
    host = str(settings_db.get("HOST") or "")
    user = urllib.parse.quote(str(settings_db.get("USER") or ""), safe="")
    password = urllib.parse.quote(str(settings_db.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    netloc_host = urllib.parse.quote(host, safe="") if host.startswith("/") else host
    port = f":{settings_db['PORT']}" if settings_db.get("PORT") else ""
    return f"postgres://{auth}{netloc_host}{port}/{settings_db['NAME']}"


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen
    log_path: Path
    url: str = ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_asgi_server(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    port: int | None = None,
    name: str = "web",
    app: str = "daarion.asgi:application",
    uvicorn_args: Sequence[str] = (),
) -> ServerProcess:
    """An ASGI app (the product's unless `app` names another, `module:attribute`) under uvicorn,
    once it answers GET /health; its log in `log_dir`; the caller stops it."""
    port = port or free_port()
    log_path = log_dir / f"{name}-{port}.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
            *uvicorn_args,
        ],
        cwd=BASE_DIR,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(name, process, log_path, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} server exited early:\n{server.log_tail()}")
        try:
            httpx.get(f"{server.url}/health", timeout=2)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} server did not start in 60 s:\n{server.log_tail()}")


def start_celery_beat(env: Mapping[str, str], log_dir: Path) -> ServerProcess:
    """Celery beat with the project's schedule (settings.CELERY_BEAT_SCHEDULE), its log in
    `log_dir`; the caller stops it."""
    log_path = log_dir / "beat.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "daarion",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(log_dir / "celerybeat-schedule"),
        ],
        cwd=BASE_DIR,
        env=dict(env),
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
    )
    return ServerProcess("beat", process, log_path)


def start_celery_worker(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    queues: str = "default,embeddings,summaries",
    pool: str = "solo",
    concurrency: int | None = None,
    name: str = "worker",
) -> ServerProcess:
    """A Celery worker; `pool="threads"` with a `concurrency` for the agents queue's runs (with
    a database connection pool, as in production)."""
    if pool == "threads":
        env = {"DATABASE_POOL": "1", "DATABASE_POOL_TIMEOUT": "10", **env}
    log_path = log_dir / f"{name}-{os.getpid()}.log"
    log = open(log_path, "wb")
    hostname = f"{name}-{os.getpid()}@%h"
    extra = ["--concurrency", str(concurrency)] if concurrency else []
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "daarion",
            "worker",
            "--pool",
            pool,
            "--loglevel",
            "INFO",
            "-Q",
            queues,
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
            *extra,
        ],
        cwd=BASE_DIR,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(name, process, log_path)
    from daarion.celery import app

    deadline = time.monotonic() + 60
    wanted = hostname.replace("%h", socket.gethostname())
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited early:\n{server.log_tail()}")
        # This worker's own answer: another worker of the session may be up already.
        if any(wanted in reply for reply in app.control.ping(timeout=0.5) or []):
            return server
    server.stop()
    raise RuntimeError(f"celery worker did not answer a ping in 60 s:\n{server.log_tail()}")
