"""LLM proxy overhead: open-loop constant-rate load on the fake upstream directly, through our
proxy and through LiteLLM's proxy, with p50/p95/p99 latency and overhead = proxy - direct.

- The upstream is testsupport/fake_llm.py in its own process (answers at once, "echo").
- Ours: the app under uvicorn (one worker, as `start_asgi_server` runs it), a real service
  token bound to one agent with a rate-limit policy (so the Redis rate-limit call and the
  usage pipeline run as in production), `/v1/chat/completions`, `/internal/llm/proxy` and
  `/v1/responses` (the same exchange as instructions + input, `store` at OpenAI's default, so
  each answer's conversation is kept in Redis as in production).
- LiteLLM: `litellm[proxy]==LITELLM_VERSION` in bench/.venv-litellm (made by this script),
  one uvicorn worker, one model pointing at the same upstream, a master key, no database.

Load is open-loop: request i is sent at t0 + i/rate whatever happened to the others, and its
latency runs from that scheduled time, so a stalled server shows up as latency instead of
quietly lowering the rate. The generator is a small HTTP/1.1 keep-alive client on asyncio
streams (one connection per request in flight), much cheaper per request than httpx, since
it shares the 2 cores with the servers it measures.

Run:  .venv/bin/python -m devtools.devstack exec --data-dir .data/bench -- \
          .venv/bin/python bench/proxy_overhead.py [--seconds 10] [--rates 100,500] [--no-litellm]
Writes bench/results/proxy_overhead.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.host import Snapshot, code_state  # noqa: E402 - once the project is on the path

RESULTS = BASE_DIR / "bench" / "results" / "proxy_overhead.json"
LITELLM_VERSION = "1.100.5"
LITELLM_VENV = BASE_DIR / "bench" / ".venv-litellm"
MODEL = "bench-echo"
AGENT = "agent:bench"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the benchmark."}]
# A rate is "held" when no request failed and the p99 stayed under this (beyond it, requests
# queue up: the server is behind the schedule, not merely slow).
HELD_P99_MS = 250.0


# --- a minimal HTTP/1.1 client -------------------------------------------------------------


class HttpError(Exception):
    pass


@dataclass
class Target:
    name: str
    host: str
    port: int
    path: str
    headers: dict[str, str]
    body: bytes
    request: bytes = b""

    def __post_init__(self) -> None:
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    raise HttpError("response without a length")


class Pool:
    """Keep-alive connections to one target; a new one is opened when all are busy."""

    # Servers close idle keep-alive connections (uvicorn after 5 s); reusing one then fails
    # with an error that is the client's doing, so older idle connections are dropped.
    MAX_IDLE_S = 3.0

    def __init__(self, target: Target, limit: int = 2000) -> None:
        self.target = target
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0
        self.limit = limit

    def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since <= self.MAX_IDLE_S and not reader.at_eof():
                return reader, writer
            writer.close()
            self.opened -= 1
        return None

    async def send(self, timeout: float) -> tuple[int, bytes]:
        conn = self._take()
        if conn is None:
            if self.opened >= self.limit:
                raise HttpError("connection_limit")
            self.opened += 1
            try:
                conn = await asyncio.wait_for(asyncio.open_connection(self.target.host, self.target.port), timeout)
            except BaseException:
                self.opened -= 1
                raise
        reader, writer = conn
        try:
            writer.write(self.target.request)
            status, body = await asyncio.wait_for(_read_response(reader), timeout)
        except BaseException:
            writer.close()
            self.opened -= 1
            raise
        self.idle.append((reader, writer, time.monotonic()))
        return status, body

    async def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()
        self.opened = 0


@dataclass
class Run:
    target: str
    rate: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    late_ms_max: float = 0.0  # how far behind its clock the generator itself fell
    sent: int = 0

    def summary(self) -> dict[str, object]:
        ok = sorted(self.latencies_ms)
        out: dict[str, object] = {
            "target": self.target,
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "ok": len(ok),
            "errors": dict(self.errors),
            "generator_late_max_ms": round(self.late_ms_max, 2),
        }
        if ok:
            out.update({f"p{q}_ms": round(_pct(ok, q / 100), 3) for q in (50, 95, 99)})
            out["mean_ms"] = round(statistics.fmean(ok), 3)
            out["max_ms"] = round(ok[-1], 3)
        return out

    @property
    def held(self) -> bool:
        return not self.errors and bool(self.latencies_ms) and _pct(sorted(self.latencies_ms), 0.99) <= HELD_P99_MS


def _pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


async def open_loop(target: Target, rate: float, seconds: float, *, warmup: float = 1.0, timeout: float = 10.0) -> Run:
    """Sends at `rate`/s for `warmup + seconds`; records the requests scheduled after warm-up."""
    pool = Pool(target)
    run = Run(target.name, rate, seconds)
    # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
    clock = time.perf_counter
    interval = 1.0 / rate
    total = int((warmup + seconds) * rate)
    first_measured = int(warmup * rate)
    tasks: set[asyncio.Task] = set()

    async def one(i: int, scheduled: float) -> None:
        try:
            status, body = await pool.send(timeout)
            done = clock()
            if status != 200:
                if i >= first_measured:
                    key = f"http_{status}"
                    run.errors[key] = run.errors.get(key, 0) + 1
                    if run.errors[key] <= 2:
                        print(f"  {target.name}: HTTP {status}: {body[:200]!r}", file=sys.stderr)
                return
            if i >= first_measured:
                run.latencies_ms.append((done - scheduled) * 1000)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
            if i >= first_measured:
                # 2000 connections open and all busy: the target is far behind the schedule.
                key = str(exc) if isinstance(exc, HttpError) else type(exc).__name__
                run.errors[key] = run.errors.get(key, 0) + 1

    start = clock() + 0.05
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        elif i >= first_measured:
            run.late_ms_max = max(run.late_ms_max, -delay * 1000)
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    run.sent = total - first_measured
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout + 5)
    await pool.close()
    return run


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (Linux /proc), in seconds."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def cpu_per_request(target: Target, pid: int, *, requests: int = 2000, concurrency: int = 4) -> dict[str, float]:
    """Closed loop: the server's CPU time per request, a figure that other load on the
    machine hardly moves (unlike latency)."""
    pool = Pool(target)
    remaining = requests
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            status, _ = await pool.send(10.0)
            failures += status != 200

    before, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = cpu_seconds(pid) - before, time.perf_counter() - started
    await pool.close()
    return {
        "requests": requests,
        "failures": failures,
        "cpu_ms_per_request": round(cpu * 1000 / requests, 3),
        "closed_loop_rps": round(requests / wall, 1),
    }


# --- the servers ---------------------------------------------------------------------------


def _wait_http(url: str, process: subprocess.Popen, what: str, timeout: float = 90.0, headers: dict | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early (status {process.returncode})")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer in {timeout:.0f} s")


def ensure_litellm_venv() -> Path:
    """bench/.venv-litellm with litellm[proxy] at the pinned version; made or fixed on demand."""
    python = LITELLM_VENV / "bin" / "python"
    if python.exists():
        check = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True
        )
        if check.returncode == 0 and check.stdout.strip() == LITELLM_VERSION:
            return LITELLM_VENV / "bin" / "litellm"
    else:
        # The base interpreter, not this venv's: LiteLLM's dependencies must not touch ours.
        base = getattr(sys, "_base_executable", None) or "python3"
        subprocess.run([base, "-m", "venv", str(LITELLM_VENV)], check=True)
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} ...", file=sys.stderr)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    return LITELLM_VENV / "bin" / "litellm"


def start_litellm(upstream: str, port: int, workdir: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    executable = ensure_litellm_venv()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/echo\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-fake-upstream\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
        "general_settings:\n"
        "  master_key: sk-bench-master\n"
    )
    # No access log, as ours runs (uvicorn --no-access-log): one log line per request is
    # CPU that neither proxy should be charged for here.
    log_config = workdir / "litellm-logging.json"
    log_config.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"default": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
                "loggers": {
                    "uvicorn": {"handlers": ["default"], "level": "WARNING"},
                    "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
                },
            }
        )
    )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):  # ours, not LiteLLM's
        env.pop(name, None)
    log = open(workdir / "litellm.log", "wb")
    process = subprocess.Popen(
        [
            str(executable),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
            "--log_config",
            str(log_config),
        ],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/health/liveliness", process, "LiteLLM proxy", timeout=180)
    return process, url


def setup_ours() -> tuple[str, str]:
    """A provider pointing at the fake upstream (set later), the model, a rate-limit policy for
    the bench agent and a token bound to it. Returns (token, provider name)."""
    from django.core.management import call_command

    from apps.llm.choices import RateLimitScope
    from apps.llm.models import LogicalModel, Provider, RateLimitPolicy
    from apps.access.services import service_token_create

    call_command("migrate", verbosity=0)
    # Records an earlier run left in the Redis buffer (runs without a drainer): a big buffer
    # makes the embedded Redis's periodic snapshot (fork and dump) take CPU mid-measurement.
    from apps.llm import usage
    from daarion.infra.redis_client import get_redis

    get_redis().delete(usage.buffer_key())
    LogicalModel.objects.filter(name=MODEL).delete()
    Provider.objects.filter(name="bench-fake").delete()
    RateLimitPolicy.objects.filter(scope=RateLimitScope.AGENT, subject=AGENT).delete()
    # The token and the policy name the bench agent: it must exist first.
    from apps.agents.models import Agent
    from apps.agents.services import agent_create

    if not Agent.objects.filter(pk=AGENT).exists():
        agent_create(agent_id=AGENT, name="Bench", microdao_id="microdao:bench", model=MODEL)
    token = service_token_create(name=f"bench-llm-{time.time_ns()}", scopes=["llm"], agents=[AGENT]).raw
    return token, "bench-fake"


# What beat's llm.drain_usage does every second in production, in a process of its own, so the
# usage records of the measured calls reach Postgres as they would and Redis stays small.
_DRAINER = """
import time, django
django.setup()
from apps.llm.usage import drain_to_database
while True:
    drain_to_database()
    time.sleep(1.0)
"""


def start_usage_drainer(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _DRAINER], cwd=BASE_DIR, env=env)


def register_upstream(upstream: str) -> None:
    from apps.llm import services
    from apps.llm.choices import RateLimitScope

    provider = services.provider_create(
        name="bench-fake",
        kind="openai_compatible",
        base_url=f"{upstream}/v1",
        api_key="sk-fake-upstream",
        timeout_seconds=10.0,
        max_retries=0,
    )
    model = services.logical_model_create(name=MODEL, input_price_per_mtok=1, output_price_per_mtok=2)
    services.deployment_create(logical_model=model, provider=provider, upstream_model="echo", weight=1)
    # Limits far above the load: the atomic Redis check and the token settle run on every
    # call, as in production, without ever refusing one.
    services.rate_limit_policy_create(
        scope=RateLimitScope.AGENT, subject=AGENT, rpm=10_000_000, tpm=1_000_000_000, max_concurrent=None
    )


# --- the measurement -----------------------------------------------------------------------


def _body(extra: dict | None = None) -> bytes:
    return json.dumps({"model": MODEL, "messages": MESSAGES, **(extra or {})}).encode()


def targets(upstream_port: int, ours_port: int, token: str, litellm_port: int | None) -> dict[str, Target]:
    out = {
        "direct": Target(
            "direct",
            "127.0.0.1",
            upstream_port,
            "/v1/chat/completions",
            {"Authorization": "Bearer sk-fake-upstream"},
            json.dumps({"model": "echo", "messages": MESSAGES}).encode(),
        ),
        "ours_v1": Target(
            "ours_v1", "127.0.0.1", ours_port, "/v1/chat/completions", {"Authorization": f"Bearer {token}"}, _body()
        ),
        "ours_internal": Target(
            "ours_internal",
            "127.0.0.1",
            ours_port,
            "/internal/llm/proxy",
            {"Authorization": f"Bearer {token}"},
            _body({"metadata": {"agent_id": AGENT, "microdao_id": "microdao:bench", "channel_id": "bench"}}),
        ),
        "ours_responses": Target(
            "ours_responses",
            "127.0.0.1",
            ours_port,
            "/v1/responses",
            {"Authorization": f"Bearer {token}"},
            json.dumps({"model": MODEL, "instructions": MESSAGES[0]["content"], "input": MESSAGES[1]["content"]}).encode(),
        ),
    }
    if litellm_port:
        out["litellm"] = Target(
            "litellm", "127.0.0.1", litellm_port, "/v1/chat/completions", {"Authorization": "Bearer sk-bench-master"}, _body()
        )
    return out


async def measure_rates(all_targets: dict[str, Target], rates: list[float], seconds: float, rounds: int) -> dict:
    """Each target at each rate; with several rounds the targets take turns, so each sees the
    same machine conditions, and the samples of the rounds are pooled."""
    results: dict[str, dict[str, Run]] = {}
    for rate in rates:
        pooled: dict[str, Run] = {}
        for round_no in range(rounds):
            order = list(all_targets)
            if round_no % 2:
                order.reverse()
            for name in order:
                await quiesce(all_targets[name])
                run = await open_loop(all_targets[name], rate, seconds)
                print(f"  {rate:>5.0f}/s {name:<14} {_fmt(run.summary())}", file=sys.stderr)
                merged = pooled.setdefault(name, Run(name, rate, 0))
                merged.latencies_ms += run.latencies_ms
                merged.seconds += run.seconds
                merged.sent += run.sent
                merged.late_ms_max = max(merged.late_ms_max, run.late_ms_max)
                for key, count in run.errors.items():
                    merged.errors[key] = merged.errors.get(key, 0) + count
        results[str(int(rate))] = pooled
    return results


# Every server of the run (upstream, ours, LiteLLM): a measurement starts only when all are idle.
SERVER_PIDS: list[int] = []


async def servers_idle(*, limit_s: float = 60.0, busy_share: float = 0.05, window_s: float = 0.5) -> None:
    """Waits until no server process uses more than `busy_share` of a core: a server still
    working through the backlog of an earlier step (LiteLLM far behind at 100/s, say) would
    otherwise take CPU from whichever target is measured next."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = {pid: cpu_seconds(pid) for pid in SERVER_PIDS}
        await asyncio.sleep(window_s)
        if all(cpu_seconds(pid) - used <= busy_share * window_s for pid, used in before.items()):
            return
    print(f"  (a server was still busy after {limit_s:.0f} s; measuring anyway)", file=sys.stderr)


async def quiesce(target: Target, *, limit_s: float = 20.0) -> None:
    """Waits until every server is idle and the target answers one request quickly: the queue
    of a saturated step must drain before the next measurement starts."""
    await servers_idle()
    pool = Pool(target)
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                await pool.send(5.0)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError):
                pass
            if time.perf_counter() - started < 0.02:
                return
            await asyncio.sleep(0.2)
    finally:
        await pool.close()


async def max_rate(target: Target, *, start: float, ceiling: float, seconds: float) -> dict:
    """The highest rate held (no error, p99 under HELD_P99_MS): doubling, then bisection."""
    tried: list[dict] = []
    good, bad = 0.0, None
    rate = start
    while rate <= ceiling:
        run = await open_loop(target, rate, seconds, warmup=0.5)
        tried.append({**run.summary(), "held": run.held})
        print(f"  max-rate {target.name:<14} {rate:>6.0f}/s held={run.held} {_fmt(run.summary())}", file=sys.stderr)
        if not run.held:
            bad = rate
            break
        good = rate
        rate *= 1.5
        await quiesce(target)
    if bad is None:
        return {"max_rate": good, "capped_at_ceiling": True, "steps": tried}
    for _ in range(3):
        if bad - good <= max(25.0, good * 0.08):
            break
        mid = round((good + bad) / 2 / 10) * 10
        await quiesce(target)
        run = await open_loop(target, mid, seconds, warmup=0.5)
        tried.append({**run.summary(), "held": run.held})
        print(f"  max-rate {target.name:<14} {mid:>6.0f}/s held={run.held} {_fmt(run.summary())}", file=sys.stderr)
        good, bad = (mid, bad) if run.held else (good, mid)
    await quiesce(target)
    return {"max_rate": good, "first_failed_rate": bad, "steps": tried}


def _fmt(s: dict) -> str:
    if "p50_ms" not in s:
        return f"no successful request; errors {s['errors']}"
    errors = f" errors {s['errors']}" if s["errors"] else ""
    return f"p50 {s['p50_ms']:7.2f}  p95 {s['p95_ms']:7.2f}  p99 {s['p99_ms']:7.2f} ms{errors}"


def overhead_table(rates: dict) -> list[dict]:
    rows = []
    for rate, runs in rates.items():
        direct = runs["direct"].summary()
        for name, run in runs.items():
            if name == "direct":
                continue
            s = run.summary()
            row = {"rate": int(rate), "target": name, "errors": s["errors"], "ok": s["ok"], "sent": s["sent"]}
            for q in ("p50", "p95", "p99"):
                if f"{q}_ms" in s and f"{q}_ms" in direct:
                    row[f"{q}_ms"] = s[f"{q}_ms"]
                    row[f"overhead_{q}_ms"] = round(s[f"{q}_ms"] - direct[f"{q}_ms"], 3)
            rows.append(row)
    return rows


def metrics_cost_table(rates: dict, cpu: dict) -> list[dict]:
    """What counting metrics costs a proxied call: the p50 (and CPU per request) of the server
    with metrics on minus the one with DAARION_METRICS=0, measured in the same run. The issue's
    target: at most 0.1 ms at p50."""
    rows = []
    for rate, runs in rates.items():
        on, off = runs.get("ours_v1"), runs.get("ours_v1_nometrics")
        if on is None or off is None:
            continue
        a, b = on.summary(), off.summary()
        if "p50_ms" in a and "p50_ms" in b:
            rows.append(
                {
                    "rate": int(rate),
                    "p50_ms_on": a["p50_ms"],
                    "p50_ms_off": b["p50_ms"],
                    "metrics_p50_ms": round(a["p50_ms"] - b["p50_ms"], 3),
                }
            )
    if "ours_v1" in cpu and "ours_v1_nometrics" in cpu:
        rows.append(
            {
                "cpu_ms_per_request_on": cpu["ours_v1"]["cpu_ms_per_request"],
                "cpu_ms_per_request_off": cpu["ours_v1_nometrics"]["cpu_ms_per_request"],
                "metrics_cpu_ms_per_request": round(
                    cpu["ours_v1"]["cpu_ms_per_request"] - cpu["ours_v1_nometrics"]["cpu_ms_per_request"], 3
                ),
            }
        )
    return rows


def print_table(rates: dict, rows: list[dict], max_rates: dict) -> None:
    print("\nopen-loop latency from the scheduled send time (ms)")
    print(f"{'rate':>6} {'target':<14} {'p50':>8} {'p95':>8} {'p99':>8} | {'+p50':>7} {'+p95':>7} {'+p99':>7}  errors")
    for rate, runs in rates.items():
        d = runs["direct"].summary()
        print(f"{rate:>6} {'direct':<14} {d.get('p50_ms', 0):8.2f} {d.get('p95_ms', 0):8.2f} {d.get('p99_ms', 0):8.2f} |")
        for row in (r for r in rows if str(r["rate"]) == rate):
            print(
                f"{'':>6} {row['target']:<14} {row.get('p50_ms', 0):8.2f} {row.get('p95_ms', 0):8.2f} {row.get('p99_ms', 0):8.2f} | "
                f"{row.get('overhead_p50_ms', 0):7.2f} {row.get('overhead_p95_ms', 0):7.2f} {row.get('overhead_p99_ms', 0):7.2f}  "
                f"{row['errors'] or ''}"
            )
    if max_rates:
        print("\nhighest rate held (no error, p99 <= %.0f ms):" % HELD_P99_MS)
        for name, found in max_rates.items():
            print(f"  {name:<14} {found['max_rate']:.0f}/s" + (" (the search ceiling)" if found.get("capped_at_ceiling") else ""))


def _profile(target: Target, pid: int, opts: argparse.Namespace) -> int:
    """py-spy (PATH or $PY_SPY) samples our server while the generator holds a constant rate."""
    import shutil

    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy not found: pip install py-spy (or set PY_SPY)")
    out = Path(opts.profile)
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(open_loop(target, 50, 2.0))  # warm-up
    duration = int(opts.seconds) + 2
    common = [py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate", "250", "--nonblocking"]
    recorders = [
        subprocess.Popen([*common, "--format", "raw", "--output", str(out / "ours.folded")]),
        subprocess.Popen([*common, "--format", "flamegraph", "--output", str(out / "ours.svg")]),
    ]
    time.sleep(1.0)
    run = asyncio.run(open_loop(target, opts.profile_rate, opts.seconds, warmup=0.5))
    print(f"profiled at {opts.profile_rate:.0f}/s: {_fmt(run.summary())}")
    for recorder in recorders:
        recorder.wait(duration + 30)
    print(f"wrote {out / 'ours.folded'} and {out / 'ours.svg'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,500", help="constant rates, requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target and rate")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the rates, targets taking turns")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--no-max-rate", action="store_true")
    parser.add_argument("--max-rate-seconds", type=float, default=5.0)
    parser.add_argument("--max-rate-ceiling", type=float, default=2000.0)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of both proxies")
    parser.add_argument(
        "--cpu-requests", type=int, default=2000, help="closed-loop requests per target for the CPU-per-request figure (0: skip)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="only profile our server with py-spy at --profile-rate "
        "(/v1 for --seconds), writing collapsed stacks and a flame graph to DIR; no other figures",
    )
    parser.add_argument("--profile-rate", type=float, default=200.0)
    parser.add_argument(
        "--metrics-off",
        action="store_true",
        help="also measure a second server of ours with "
        "DAARION_METRICS=0 (target ours_v1_nometrics): the metrics' cost per call, in the same run",
    )
    parser.add_argument(
        "--ours-app",
        default="",
        help="an ASGI app (module:attr) to measure instead of ours as "
        "shipped, for experiments; run with the module on PYTHONPATH",
    )
    opts = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")
    os.environ.setdefault("DAARION_LOG_LEVEL", "WARNING")
    try:  # the generator's own CPU per request drops by about a third on uvloop
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    import django

    django.setup()
    from devtools.testing import free_port, start_asgi_server

    token, _ = setup_ours()
    workdir = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, "-m", "testsupport.fake_llm", "--port", str(upstream_port)], cwd=BASE_DIR)
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    processes: list[subprocess.Popen] = [upstream]
    server = None
    extra_servers: list = []
    metrics_dir = workdir / "prometheus"
    try:
        _wait_http(f"{upstream_url}/health", upstream, "fake upstream")
        register_upstream(upstream_url)
        # Metrics as in production: multiprocess mode, a folder of this run's own, in memory
        # where the machine has /dev/shm (as devstack and docker-compose put it).
        metrics_dir = Path(
            tempfile.mkdtemp(prefix="daarion-bench-metrics-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        )
        env = {**os.environ, "DAARION_LOG_LEVEL": "WARNING", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        processes.append(start_usage_drainer(env))
        server = start_asgi_server(
            env,
            workdir,
            name="bench-web",
            app=opts.ours_app or "daarion.asgi:application",
            uvicorn_args=("--workers", str(opts.workers)) if opts.workers > 1 else (),
        )
        litellm_port = None
        if not opts.no_litellm:
            litellm_port = free_port()
            process, _ = start_litellm(upstream_url, litellm_port, workdir, opts.workers)
            processes.append(process)
        all_targets = targets(upstream_port, int(server.url.rsplit(":", 1)[1]), token, litellm_port)
        SERVER_PIDS[:] = [process.pid for process in processes] + [server.process.pid]
        if opts.metrics_off:
            unmetered = start_asgi_server({**env, "DAARION_METRICS": "0"}, workdir, name="bench-web-nometrics")
            extra_servers.append(unmetered)
            port = int(unmetered.url.rsplit(":", 1)[1])
            all_targets["ours_v1_nometrics"] = Target(
                "ours_v1_nometrics", "127.0.0.1", port, "/v1/chat/completions", {"Authorization": f"Bearer {token}"}, _body()
            )
            SERVER_PIDS.append(unmetered.process.pid)

        if opts.profile:
            return _profile(all_targets["ours_v1"], server.process.pid, opts)

        async def everything() -> tuple[dict, dict, dict]:
            # A short warm-up of every target (connections, first-call imports, snapshots).
            for target in all_targets.values():
                warm = await open_loop(target, 50, 1.0, warmup=0.5)
                if not warm.latencies_ms:
                    raise RuntimeError(f"{target.name} does not answer: {warm.errors}")
            rates = await measure_rates(all_targets, [float(r) for r in opts.rates.split(",")], opts.seconds, opts.rounds)
            found = {}
            if not opts.no_max_rate:
                for name in ("direct", "ours_v1", "litellm"):
                    if name in all_targets:
                        found[name] = await max_rate(
                            all_targets[name], start=250.0, ceiling=opts.max_rate_ceiling, seconds=opts.max_rate_seconds
                        )
            cpu = {}
            if opts.cpu_requests:
                pids = {
                    "direct": upstream.pid,
                    "ours_v1": server.process.pid,
                    "ours_internal": server.process.pid,
                    "ours_responses": server.process.pid,
                }
                if litellm_port:
                    pids["litellm"] = processes[-1].pid
                if extra_servers:
                    pids["ours_v1_nometrics"] = extra_servers[0].process.pid
                for name, pid in pids.items():
                    cpu[name] = await cpu_per_request(all_targets[name], pid, requests=opts.cpu_requests)
                    print(f"  cpu {name:<14} {cpu[name]}", file=sys.stderr)
            return rates, found, cpu

        host = Snapshot()
        rates, found, cpu = asyncio.run(everything())
        machine = host.machine()
        print(
            "\nhost speed (a fixed loop's median, lower is faster): "
            f"{machine['host_speed_ms_before']} ms before, {machine['host_speed_ms_after']} ms after"
        )
        rows = overhead_table(rates)
        print_table(rates, rows, found)
        if cpu:
            print("\nserver CPU per request (closed loop, 4 in flight; user+system of the server process):")
            for name, figures in cpu.items():
                print(f"  {name:<14} {figures['cpu_ms_per_request']:6.3f} ms   ({figures['closed_loop_rps']:.0f} req/s)")
        metrics_cost = metrics_cost_table(rates, cpu) if opts.metrics_off else None
        if metrics_cost:
            print("\nmetrics cost (ours_v1 - ours_v1_nometrics, same run):")
            for row in metrics_cost:
                print("  " + "  ".join(f"{k} {v}" for k, v in row.items()))
        result = {
            "metrics_cost": metrics_cost,
            "machine": machine,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "code": code_state("apps/llm", "daarion", "testsupport"),
            "litellm_version": None if opts.no_litellm else LITELLM_VERSION,
            "settings": {
                "seconds": opts.seconds,
                "rounds": opts.rounds,
                "held_p99_ms": HELD_P99_MS,
                "workers": opts.workers,
                "messages": MESSAGES,
                "command": " ".join(sys.argv),
            },
            "runs": {rate: {name: run.summary() for name, run in runs.items()} for rate, runs in rates.items()},
            "overhead": rows,
            "max_rate": found,
            "cpu_per_request": cpu,
        }
        Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {opts.out}")
    finally:
        for extra in extra_servers:
            extra.stop()
        if server is not None:
            server.stop()
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
