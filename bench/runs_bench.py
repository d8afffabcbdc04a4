"""Agent runs (issue #12): what making the agent turn a durable run costs, side by side in one
run against the in-request turn it replaced, on the offline stub model.

1. Time to first chunk (the first SSE `data:` line after the request is written), p50/p99
   of a streamed turn: `POST /internal/agents/agent:sofia/chat` with `stream: true` on the
   real server (`daarion.asgi` under uvicorn, psycopg pool on) and two real `agents` workers
   (`-P threads`), against the same turn run inside the request (bench/inrequest_app.py: the
   product app plus one route that runs `turn_prepare` + `turn_events` -> UIChunks -> sse in
   the request), served by uvicorn on another port against the same Postgres and Redis.
   Sequential turns, each on its own session, the two paths taking turns (which one goes
   first alternates), after a warm-up. Agent: Sofia-Prime of the demo seed on `dagi-stub`
   (memory recall and store included). The run rows' timestamps split the durable figure.
2. Concurrent streamed runs: K streams opened at once (each its own session) against two
   agents workers (`-P threads -c N`); every stream is checked whole: 200, the exact chunk
   sequence `start` ... `finish`, `[DONE]`, every event id present, unique and increasing,
   the text equal to the model's answer, and the run row `succeeded`. What keeps the runs in
   flight together: the agent's model is a small OpenAI-compatible upstream of this script
   (`drip:<gap>`: a word every <gap> seconds, 13 words a run). The peak number of runs
   running at once comes from the rows' started/finished times, the split between the two
   workers from `Run.executor`. Steps stop at the first K not held. Done twice: against a web
   process with the shipped settings, and one whose readers wake every second
   (AGENTS_STREAM_HEARTBEAT_SECONDS=1; see part 4).
3. Redis memory per finished run kept for resume: M background runs (`POST .../runs`) with
   a short and a long answer; `MEMORY USAGE ... SAMPLES 0`, `XLEN` and `TTL` of each run's
   stream key, and the change of every key by pattern (what else a turn leaves in Redis).
4. A run whose model says nothing for a few seconds (`quiet:<seconds>`): does its reader
   still get the whole run? (The readers' XREAD BLOCK is the heartbeat interval, 10 s, on a
   Redis client whose socket timeout is 2 s.)

Run:  .venv/bin/python -m devtools.devstack exec --data-dir .data/bench -- \\
          .venv/bin/python bench/runs_bench.py [--turns 300] [--levels 50,100,200,300,400]
          [--concurrency 200] [--gap 1.0] [--memory-runs 100] [--skip ttfc,concurrency,memory,quiet]
          [--worker-pool N]   (experiment: the workers on a psycopg pool of N)
Writes bench/results/runs_bench.json and prints a table. About 10 minutes on a busy 2-core host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
from bench.host import Snapshot, code_state  # noqa: E402 - once the project is on the path

RESULTS = BASE_DIR / "bench" / "results" / "runs_bench.json"
SOFIA = "agent:sofia"
SLOW_AGENT = "agent:bench-runs"
QUIET_AGENT = "agent:bench-quiet"
# Parts 2 and 4 run against two web processes: the settings as shipped, and readers that wake
# every second (None: the setting's value).
WEB_HEARTBEATS = {"defaults": None, "heartbeat_1s": 1}
TTFC_TARGET_MS = 15.0
INFLIGHT_TARGET = 200


# --- a small streaming HTTP/1.1 client (the same for both paths) -------------------------


@dataclass
class Stream:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    done: bool = False
    first_chunk_ms: float | None = None
    first_delta_ms: float | None = None
    total_ms: float | None = None
    error: str | None = None
    raw_tail: bytes = b""
    sent_at: float = 0.0  # wall clock (time.time()) when the request was written
    first_chunk_at: float | None = None


async def sse_post(port: int, path: str, token: str, payload: dict[str, Any], timeout: float = 120.0) -> Stream:
    """POSTs `payload` and reads the SSE answer to its end; times run from the request's
    write to the first `data:` chunk, the first text delta and the end."""
    out = Stream()
    body = json.dumps(payload).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
            try:
                t0 = time.perf_counter()
                out.sent_at = time.time()
                writer.write(head)
                await writer.drain()
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.decode("latin-1").split("\r\n")
                out.status = int(lines[0].split(" ", 2)[1])
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        out.headers[name.strip().lower()] = value.strip()
                chunked = out.headers.get("transfer-encoding", "").lower() == "chunked"
                buf = b""
                while True:
                    if chunked:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            break
                        piece = await reader.readexactly(size + 2)
                        piece = piece[:-2]
                    else:
                        piece = await reader.read(65536)
                        if not piece:
                            break
                    now = (time.perf_counter() - t0) * 1000
                    buf += piece
                    while b"\n\n" in buf:
                        event, buf = buf.split(b"\n\n", 1)
                        _event(out, event.decode(), now)
                out.total_ms = (time.perf_counter() - t0) * 1000
                out.raw_tail = buf
            finally:
                writer.close()
    except Exception as exc:  # noqa: BLE001 - reported per stream
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def _event(out: Stream, event: str, now: float) -> None:
    if not event.strip() or event.startswith(":"):
        return  # a heartbeat comment
    event_id, data = None, None
    for line in event.split("\n"):
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = line[6:]
    if data is None:
        return
    if data == "[DONE]":
        out.done = True
        return
    chunk = json.loads(data)
    if out.first_chunk_ms is None:
        out.first_chunk_ms = now
        out.first_chunk_at = out.sent_at + now / 1000
    if chunk.get("type") == "text-delta" and out.first_delta_ms is None:
        out.first_delta_ms = now
    out.events.append((event_id, chunk))


def _text(stream: Stream) -> str:
    return "".join(c.get("delta", "") for _, c in stream.events if c.get("type") == "text-delta")


def _pieces(text: str) -> int:
    return len(re.findall(r"\S+\s*", text))


def check_stream(stream: Stream, expected_text: str, *, with_ids: bool) -> list[str]:
    """What is wrong with a streamed turn (empty: complete and exact)."""
    problems = []
    if stream.error:
        return [stream.error]
    if stream.status != 200:
        return [f"status {stream.status}: {stream.raw_tail[:200]!r}"]
    if not stream.done:
        problems.append("no [DONE]")
    types = [c.get("type") for _, c in stream.events]
    wanted = (
        ["start", "message-metadata", "start-step", "text-start"]
        + ["text-delta"] * _pieces(expected_text)
        + ["text-end", "finish-step", "finish"]
    )
    if types != wanted:
        problems.append(f"chunk sequence {types} != {wanted}")
    if _text(stream) != expected_text:
        problems.append(f"text {_text(stream)!r} != {expected_text!r}")
    if with_ids:
        ids = [i for i, _ in stream.events]
        if any(i is None for i in ids):
            problems.append("an event without an id")
        else:
            keys = [tuple(int(p) for p in i.split("-")) for i in ids]
            if len(set(keys)) != len(keys):
                problems.append("a duplicated event id")
            if keys != sorted(keys):
                problems.append("event ids not increasing")
    return problems


# --- figures -------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    return {
        "p50_ms": round(_pct(samples, 0.5), 2),
        "p99_ms": round(_pct(samples, 0.99), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
        "n": len(samples),
    }


# --- the model upstream of parts 2 and 4 -----------------------------------------------------


async def upstream_app(scope, receive, send) -> None:  # noqa: ANN001 - the ASGI signature
    """A minimal OpenAI-compatible streaming upstream. Model `drip:<gap>` streams
    "echo: <last user message>" a word every <gap> seconds (a model that keeps a run busy
    for a while, as real ones do); `quiet:<seconds>` says nothing for that long, then
    streams the same answer at once (a slow first token, or a slow tool)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    raw = b""
    while True:
        message = await receive()
        raw += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = json.loads(raw or b"{}")
    behaviour, _, arg = str(body.get("model", "")).partition(":")
    user = next((m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
    content = f"echo: {user}"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

    async def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> None:
        payload: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model"),
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            payload["usage"] = usage
        await send({"type": "http.response.body", "body": f"data: {json.dumps(payload)}\n\n".encode(), "more_body": True})

    await chunk({"role": "assistant", "content": ""})
    if behaviour == "quiet":
        await asyncio.sleep(float(arg or 3))
    for piece in re.findall(r"\S+\s*", content):
        if behaviour == "drip":
            await asyncio.sleep(float(arg or 0.5))
        await chunk({"content": piece})
    await chunk({}, "stop")
    words = len(content.split())
    await chunk({}, usage={"prompt_tokens": 10, "completion_tokens": words, "total_tokens": 10 + words})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def start_upstream(log_dir: Path):
    from devtools.testing import start_asgi_server

    # Keep-alive longer than the gateway's aiohttp pool keeps idle connections (30 s), as
    # hosted APIs do: with uvicorn's 5 s, a connection idle 5-30 s fails on its next use.
    return start_asgi_server(
        os.environ,
        log_dir,
        name="upstream",
        app="bench.runs_bench:upstream_app",
        uvicorn_args=["--timeout-keep-alive", "75", "--log-level", "warning"],
    )


# --- processes -------------------------------------------------------------------------------


def start_inrequest_server(env: dict[str, str], log_dir: Path):
    """bench/inrequest_app.py under uvicorn, as the product is run."""
    from devtools.testing import start_asgi_server

    return start_asgi_server(env, log_dir, name="inrequest", app="bench.inrequest_app:application")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- 1. time to first chunk -------------------------------------------------------------------


def ttfc(web_port: int, base_port: int, token: str, turns: int, warmup: int, stamp: str) -> dict[str, Any]:
    message = "Hello, benchmark: how are you today?"
    expected = f"[stub] You said: {message}"
    paths = {
        "durable": (web_port, f"/internal/agents/{SOFIA}/chat"),
        "in_request": (base_port, f"/internal/bench-inrequest/agents/{SOFIA}/chat"),
    }
    samples: dict[str, dict[str, list[float]]] = {name: {"first_chunk": [], "first_delta": [], "total": []} for name in paths}
    failures: dict[str, list[str]] = {name: [] for name in paths}
    stamps: dict[str, tuple[float, float]] = {}  # durable session -> (sent at, first chunk at)

    async def one(name: str, i: int) -> None:
        port, path = paths[name]
        session = f"ttfc-{stamp}-{name}-{i}"
        payload = {"message": message, "session_id": session, "stream": True}
        stream = await sse_post(port, path, token, payload)
        problems = check_stream(stream, expected, with_ids=name == "durable")
        if problems:
            failures[name].append(f"turn {i}: {problems[0]}")
            return
        if i >= warmup:
            if name == "durable":
                stamps[session] = (stream.sent_at, stream.first_chunk_at)
            samples[name]["first_chunk"].append(stream.first_chunk_ms)
            samples[name]["first_delta"].append(stream.first_delta_ms)
            samples[name]["total"].append(stream.total_ms)

    async def run() -> None:
        for i in range(warmup + turns):
            order = ("durable", "in_request") if i % 2 == 0 else ("in_request", "durable")
            for name in order:
                await one(name, i)

    asyncio.run(run())
    out: dict[str, Any] = {"turns": turns, "warmup": warmup, "message": message}
    for name in paths:
        out[name] = {part: _summary(values) for part, values in samples[name].items()}
        out[name]["failures"] = failures[name][:10]
        out[name]["failed"] = len(failures[name])
    d, b = out["durable"]["first_chunk"], out["in_request"]["first_chunk"]
    if d and b:
        out["extra_first_chunk_p50_ms"] = round(d["p50_ms"] - b["p50_ms"], 2)
        out["extra_first_chunk_p99_ms"] = round(d["p99_ms"] - b["p99_ms"], 2)
        out["target_extra_p50_ms"] = TTFC_TARGET_MS
        out["target_met"] = out["extra_first_chunk_p50_ms"] <= TTFC_TARGET_MS and not out["durable"]["failed"]
    dd, bd = out["durable"]["first_delta"], out["in_request"]["first_delta"]
    if dd and bd:
        out["extra_first_delta_p50_ms"] = round(dd["p50_ms"] - bd["p50_ms"], 2)
    out["durable_breakdown"] = _breakdown(stamps)
    return out


def _breakdown(stamps: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Where a durable turn's time to first chunk goes, from the run rows' timestamps (one
    host, one clock): request sent -> run row made (web: auth, turn_prepare, run_start) ->
    run begun on a worker (commit, Celery publish, the worker's pickup, lease, run_begin) ->
    first chunk read by the client (the worker's prepare and first XADD, the web process's
    XREAD, the SSE write)."""
    from apps.agents.models import Run

    parts: dict[str, list[float]] = {"sent_to_created": [], "created_to_started": [], "started_to_first_chunk": []}
    for session, created, started in Run.objects.filter(session_id__in=list(stamps)).values_list(
        "session_id", "created_at", "started_at"
    ):
        sent, first = stamps[session]
        if created and started and first:
            parts["sent_to_created"].append((created.timestamp() - sent) * 1000)
            parts["created_to_started"].append((started.timestamp() - created.timestamp()) * 1000)
            parts["started_to_first_chunk"].append((first - started.timestamp()) * 1000)
    return {name: _summary(values) for name, values in parts.items()}


# --- 2. concurrent runs -----------------------------------------------------------------------


def _peak_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    now = peak = 0
    for _, step in points:
        now += step
        peak = max(peak, now)
    return peak


def concurrency(web_port: int, token: str, level: int, stamp: str) -> dict[str, Any]:
    from apps.agents.models import Run

    words = "alpha beta gamma delta epsilon zeta eta theta"

    async def one(j: int) -> tuple[Stream, str]:
        message = f"run {j} of {level}: {words}"
        payload = {"message": message, "session_id": f"conc-{stamp}-{level}-{j}", "stream": True}
        return await sse_post(web_port, f"/internal/agents/{SLOW_AGENT}/chat", token, payload, timeout=300), message

    async def run() -> tuple[list[tuple[Stream, str]], float]:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(j) for j in range(level)))
        return results, time.perf_counter() - started

    results, wall = asyncio.run(run())
    problems: list[str] = []
    complete = 0
    run_ids = []
    first_chunk = []
    for j, (stream, message) in enumerate(results):
        found = check_stream(stream, f"echo: {message}", with_ids=True)
        if stream.headers.get("x-daarion-run-id"):
            run_ids.append(stream.headers["x-daarion-run-id"])
        if found:
            problems.append(f"stream {j}: {'; '.join(found)[:300]}")
        else:
            complete += 1
            first_chunk.append(stream.first_chunk_ms)
    rows = list(Run.objects.filter(pk__in=run_ids).values_list("status", "started_at", "finished_at", "executor"))
    statuses: dict[str, int] = {}
    for status, *_ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    intervals = [(s.timestamp(), f.timestamp()) for _, s, f, _ in rows if s and f]
    executors: dict[str, int] = {}
    for *_, executor in rows:
        executors[executor] = executors.get(executor, 0) + 1
    durations = [(f - s) * 1000 for s, f in intervals]
    return {
        "streams": level,
        "complete": complete,
        "problems": problems[:10],
        "failed": len(problems),
        "run_statuses": statuses,
        "peak_running_at_once": _peak_overlap(intervals),
        "runs_per_worker": sorted(executors.values(), reverse=True),
        "first_chunk": _summary(first_chunk),
        "run_duration": _summary(durations),
        "wall_seconds": round(wall, 2),
        "held": complete == level and statuses.get("succeeded", 0) == level,
    }


# --- 3. Redis memory per finished run ---------------------------------------------------------


def _pattern(name: str) -> str:
    name = re.sub(r"run-[0-9a-f]{32}", "run-*", name)
    name = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "*", name)
    return re.sub(r"[0-9a-f]{16,}", "*", name)


def _key_sizes(redis) -> dict[str, int]:
    sizes = {}
    for name in redis.scan_iter(count=1000):
        size = redis.memory_usage(name, samples=0)
        if size is not None:
            sizes[name.decode()] = size
    return sizes


def redis_memory(web_port: int, token: str, per_size: int, stamp: str) -> dict[str, Any]:
    import httpx
    from django.conf import settings

    from apps.agents.models import Run
    from apps.agents.runs.chunks import stream_key
    from daarion.infra.redis_client import get_redis

    redis = get_redis()
    out: dict[str, Any] = {
        "retention_seconds": settings.AGENTS_RUN_RETENTION_SECONDS,
        "stream_max_chunks": settings.AGENTS_RUN_STREAM_MAX_CHUNKS,
        "sizes": {},
        "note": "used_memory_delta_per_run includes transient Celery keys (unacked, queues) "
        "and is noisy; stream_bytes_per_run is what a run keeps for resume",
    }
    long_words = " ".join(f"word{n}" for n in range(200))
    for label, message in (("short", "Hello, memory benchmark."), ("long", f"Please repeat: {long_words}")):
        before_keys = _key_sizes(redis)
        before = redis.info("memory")["used_memory"]
        run_ids: list[str] = []
        with httpx.Client(
            base_url=f"http://127.0.0.1:{web_port}", timeout=60, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            for j in range(per_size):
                answer = client.post(
                    f"/internal/agents/{SOFIA}/runs", json={"message": message, "session_id": f"mem-{stamp}-{label}-{j}"}
                )
                assert answer.status_code == 202, answer.text
                run_ids.append(answer.json()["id"])
        deadline = time.monotonic() + 120
        while Run.objects.filter(pk__in=run_ids, status__in=["queued", "running"]).exists():
            if time.monotonic() > deadline:
                break  # reported below as runs not succeeded
            time.sleep(0.2)
        time.sleep(0.5)  # the end marker and EXPIRE follow the row's update
        after = redis.info("memory")["used_memory"]
        after_keys = _key_sizes(redis)
        statuses = list(Run.objects.filter(pk__in=run_ids).values_list("status", flat=True))
        stream_bytes, entries, ttls = [], [], []
        for run_id in run_ids:
            name = stream_key(run_id)
            stream_bytes.append(redis.memory_usage(name, samples=0) or 0)
            entries.append(redis.xlen(name))
            ttls.append(redis.ttl(name))
        grouped: dict[str, int] = {}
        for name in set(before_keys) | set(after_keys):
            delta = after_keys.get(name, 0) - before_keys.get(name, 0)
            if delta:
                grouped[_pattern(name)] = grouped.get(_pattern(name), 0) + delta
        out["sizes"][label] = {
            "runs": per_size,
            "succeeded": statuses.count("succeeded"),
            "stream_entries_per_run": round(statistics.fmean(entries), 1),
            "stream_bytes_per_run": {
                "mean": round(statistics.fmean(stream_bytes)),
                "min": min(stream_bytes),
                "max": max(stream_bytes),
            },
            "bytes_per_entry": round(statistics.fmean(stream_bytes) / max(1, statistics.fmean(entries)), 1),
            "stream_ttl_seconds_seen": [min(ttls), max(ttls)],
            "used_memory_delta_per_run": round((after - before) / per_size),
            "key_delta_per_run_by_pattern": {
                k: round(v / per_size) for k, v in sorted(grouped.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= per_size
            },
        }
    short, long = out["sizes"]["short"], out["sizes"]["long"]
    slope = (long["stream_bytes_per_run"]["mean"] - short["stream_bytes_per_run"]["mean"]) / max(
        1e-9, long["stream_entries_per_run"] - short["stream_entries_per_run"]
    )
    out["fit"] = {
        "bytes_per_entry": round(slope, 1),
        "bytes_fixed": round(short["stream_bytes_per_run"]["mean"] - slope * short["stream_entries_per_run"]),
    }
    return out


# --- 4. a run quiet for a while ---------------------------------------------------------------


def quiet_probe(web_port: int, token: str, quiet: float, stamp: str) -> dict[str, Any]:
    """One streamed run whose model says nothing for `quiet` seconds after `start-step` (a
    slow first token, as reasoning models have): does its reader still get the whole run?"""
    from apps.agents.models import Run

    message = "a quiet model, then an answer"
    payload = {"message": message, "session_id": f"quiet-{stamp}", "stream": True}
    stream = asyncio.run(sse_post(web_port, f"/internal/agents/{QUIET_AGENT}/chat", token, payload, timeout=60))
    problems = check_stream(stream, f"echo: {message}", with_ids=True)
    run_id = stream.headers.get("x-daarion-run-id")
    deadline = time.monotonic() + 60
    while run_id and Run.objects.filter(pk=run_id, status__in=["queued", "running"]).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first() if run_id else None
    return {
        "quiet_seconds": quiet,
        "heartbeat_seconds": None,
        "stream_complete": not problems,
        "problems": problems[:3],
        "chunks_read": [c.get("type") for _, c in stream.events],
        "run_status": status,
    }


# --- main -------------------------------------------------------------------------------------


def setup_agents(upstream_url: str, gap: float, quiet: float) -> None:
    from apps.demo import agents as agents_demo
    from apps.agents.models import Agent
    from apps.agents.services import agent_create, agent_update
    from apps.demo import registry as registry_demo
    from apps.registry.documents import registry_apply

    registry_demo.seed()
    agents_demo.seed()  # agent:sofia (Sofia-Prime) on dagi-stub
    registry_apply(
        prune=False,
        document={
            "providers": {
                "bench-upstream": {
                    "kind": "openai_compatible",
                    "base_url": upstream_url,
                    "api_key": "sk-bench-000000",
                    "timeout_seconds": 300,
                    "max_retries": 0,
                }
            },
            "models": {
                "bench-drip": {"provider": "bench-upstream", "name": f"drip:{gap:g}", "context_window": 32768},
                "bench-quiet": {"provider": "bench-upstream", "name": f"quiet:{quiet:g}", "context_window": 32768},
            },
        },
    )
    for agent_id, model in ((SLOW_AGENT, "bench-drip"), (QUIET_AGENT, "bench-quiet")):
        fields = {"model": model, "memory_recall_limit": 5, "max_tool_steps": 0}
        agent = Agent.objects.filter(pk=agent_id).first()
        if agent is None:
            agent_create(agent_id=agent_id, name=agent_id.split(":")[1], microdao_id="microdao:7", **fields)
        else:
            agent_update(agent=agent, enabled=True, **fields)


def wait_served(web_url: str, token: str, agent_id: str, model: str) -> None:
    """Until the server's agent snapshot has the agent on `model` (and loaded)."""
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = httpx.get(f"{web_url}/internal/agents/{agent_id}", headers={"Authorization": f"Bearer {token}"})
        if answer.status_code == 200 and answer.json()["model"] == model and answer.json()["loaded"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{agent_id} not served on {model}: {answer.status_code} {answer.text[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=300, help="measured sequential turns per path")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--levels", default="25,50,100,200,300,400", help="concurrent streams per step")
    parser.add_argument("--concurrency", type=int, default=200, help="threads of each agents worker")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between the drip model's words (part 2)")
    parser.add_argument("--quiet", type=float, default=3.0, help="seconds the quiet model says nothing (part 4)")
    parser.add_argument(
        "--worker-pool",
        type=int,
        default=0,
        help="experiment: run the agents workers with DATABASE_POOL=1 and this DATABASE_POOL_MAX",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--memory-runs", type=int, default=100, help="runs per answer size for part 3")
    parser.add_argument("--skip", default="", help="parts to skip: ttfc,concurrency,memory,quiet")
    opts = parser.parse_args()
    skip = set(filter(None, opts.skip.split(",")))

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")
    os.environ.setdefault("DAARION_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from apps.access.services import service_token_create
    from devtools.testing import start_asgi_server, start_celery_worker

    call_command("migrate", verbosity=0)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    token = service_token_create(name=f"bench-runs-{time.time_ns()}", scopes=["agents"]).raw
    stamp = uuid.uuid4().hex[:8]
    # As production runs them (docker-compose.yml, devstack run): the psycopg pool in the web
    # processes and in the agents workers (start_celery_worker turns it on for a thread pool).
    env = {**os.environ, "DAARION_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_POOL", None)
    web_env = {**env, "DATABASE_POOL": "1"}
    if opts.worker_pool:
        # An experiment: the workers' pool at another size than the default (10).
        env.update(DATABASE_POOL="1", DATABASE_POOL_MAX=str(opts.worker_pool))
    processes = []
    report: dict[str, Any] = {}
    try:
        upstream = start_upstream(log_dir)
        processes.append(upstream)
        setup_agents(upstream.url, opts.gap, opts.quiet)
        web = start_asgi_server(web_env, log_dir, name="web")
        processes.append(web)
        # A second web process whose readers wake every second (AGENTS_STREAM_HEARTBEAT_SECONDS=1),
        # under the Redis client's 2 s socket timeout: see part 4 and docs/BENCHMARKS.md.
        web_hb = start_asgi_server(
            {**web_env, "AGENTS_STREAM_HEARTBEAT_SECONDS": str(WEB_HEARTBEATS["heartbeat_1s"])}, log_dir, name="web-hb1"
        )
        processes.append(web_hb)
        webs = {"defaults": web, "heartbeat_1s": web_hb}
        base = start_inrequest_server(web_env, log_dir)
        processes.append(base)
        for n in (1, 2):
            processes.append(
                start_celery_worker(
                    env,
                    log_dir,
                    queues=settings.AGENTS_RUN_QUEUE,
                    pool="threads",
                    concurrency=opts.concurrency,
                    name=f"agents{n}",
                )
            )
        wait_served(web.url, token, SOFIA, "dagi-stub")
        wait_served(web.url, token, SLOW_AGENT, "bench-drip")
        wait_served(web.url, token, QUIET_AGENT, "bench-quiet")
        host = Snapshot()
        print(f"logs in {log_dir}; host speed {host.speed} ms, load {host.load}", flush=True)

        if "ttfc" not in skip:
            report["time_to_first_chunk"] = ttfc(_port(web.url), _port(base.url), token, opts.turns, opts.warmup, stamp)
            part = report["time_to_first_chunk"]
            print("\n1. time to first chunk (ms), sequential streamed turns, dagi-stub")
            print(f"{'path':12s} {'first chunk p50/p99':>22s} {'first delta p50/p99':>22s} {'whole turn p50/p99':>22s} failed")
            for name in ("in_request", "durable"):
                row = part[name]
                cells = [
                    f"{row[k]['p50_ms']:.2f} / {row[k]['p99_ms']:.2f}" if row[k] else "-"
                    for k in ("first_chunk", "first_delta", "total")
                ]
                print(f"{name:12s} {cells[0]:>22s} {cells[1]:>22s} {cells[2]:>22s} {row['failed']}")
            print(
                f"durable - in-request, first chunk p50 {part.get('extra_first_chunk_p50_ms')} ms "
                f"(target <= {TTFC_TARGET_MS}), p99 {part.get('extra_first_chunk_p99_ms')} ms",
                flush=True,
            )
            print(
                "durable breakdown p50/p99 (ms): "
                + ", ".join(f"{k} {v.get('p50_ms')}/{v.get('p99_ms')}" for k, v in part["durable_breakdown"].items()),
                flush=True,
            )

        if "concurrency" not in skip:
            levels = [int(x) for x in opts.levels.split(",") if x]
            report["concurrency"] = {
                "workers": 2,
                "threads_per_worker": opts.concurrency,
                "model": f"drip:{opts.gap:g} (a word every {opts.gap:g} s, 13 words a run)",
                "target": INFLIGHT_TARGET,
            }
            for label, server in webs.items():
                steps = []
                print(
                    f"\n2. concurrent streamed runs ({label}), 2 workers -P threads -c {opts.concurrency}, "
                    f"model drip:{opts.gap:g}"
                )
                print(
                    f"{'streams':>8s} {'complete':>9s} {'peak running':>13s} {'per worker':>12s} "
                    f"{'first chunk p50/p99':>20s} {'wall s':>7s} held"
                )
                for level in levels:
                    step = concurrency(_port(server.url), token, level, f"{stamp}-{label}")
                    steps.append(step)
                    fc = step["first_chunk"]
                    print(
                        f"{level:>8d} {step['complete']:>9d} {step['peak_running_at_once']:>13d} "
                        f"{'/'.join(map(str, step['runs_per_worker'])):>12s} "
                        f"{(str(fc.get('p50_ms')) + ' / ' + str(fc.get('p99_ms'))) if fc else '-':>20s} "
                        f"{step['wall_seconds']:>7.1f} {step['held']}",
                        flush=True,
                    )
                    for problem in step["problems"][:3]:
                        print(f"    {problem}")
                    if not step["held"]:
                        break  # the next level would not be held either
                held = [s["streams"] for s in steps if s["held"]]
                report["concurrency"][label] = {
                    "steps": steps,
                    "most_streams_held": max(held) if held else 0,
                    "most_running_at_once_held": max((s["peak_running_at_once"] for s in steps if s["held"]), default=0),
                }
                report["concurrency"][label]["target_met"] = (
                    report["concurrency"][label]["most_running_at_once_held"] >= INFLIGHT_TARGET
                )

        if "memory" not in skip:
            report["redis_memory"] = redis_memory(_port(web.url), token, opts.memory_runs, stamp)
            mem = report["redis_memory"]
            print(f"\n3. Redis memory per finished run (retention {mem['retention_seconds']} s)")
            for label, row in mem["sizes"].items():
                print(
                    f"{label:6s} {row['succeeded']}/{row['runs']} runs, {row['stream_entries_per_run']:>6.1f} entries, "
                    f"stream {row['stream_bytes_per_run']['mean']} B ({row['bytes_per_entry']} B/entry), "
                    f"TTL {row['stream_ttl_seconds_seen']}"
                )
                for pattern, delta in list(row["key_delta_per_run_by_pattern"].items())[:6]:
                    print(f"         {pattern}: {delta:+d} B/run")
            print(f"fit: {mem['fit']['bytes_fixed']} B + {mem['fit']['bytes_per_entry']} B x entries")
        if "quiet" not in skip:
            report["quiet_run"] = {}
            for label, server in webs.items():
                probe = quiet_probe(_port(server.url), token, opts.quiet, f"{stamp}-{label}")
                probe["heartbeat_seconds"] = WEB_HEARTBEATS[label] or settings.AGENTS_STREAM_HEARTBEAT_SECONDS
                report["quiet_run"][label] = probe
                print(
                    f"\n4. a run quiet for {opts.quiet:g} s ({label}, heartbeat {probe['heartbeat_seconds']:g} s): "
                    f"stream complete {probe['stream_complete']}, run {probe['run_status']}; {probe['problems'][:1]}"
                )
        report["machine"] = host.machine()
    finally:
        for process in processes:
            process.stop()

    report["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["code"] = code_state("apps", "daarion", "bench")
    report["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    out = opts.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    machine = report["machine"]
    print(
        f"\nhost speed {machine['host_speed_ms_before']} ms before, {machine['host_speed_ms_after']} ms after; "
        f"load {machine['loadavg_after']}"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
