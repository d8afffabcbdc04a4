"""Toolcore overhead: p50/p99 of a tool call through toolcore minus a direct call to the same
HTTP target (a local HTTP server in its own process).

Three figures:
- api: POST /internal/tools/call on the app under uvicorn (auth, registry, rate-limit-free
  tool, schema checks, executor, audit queue, one extra HTTP hop) vs POST to the target;
- in-process: `apps.tools.services.tool_call()` vs the same httpx POST from the same loop
  (what the agents app pays when it calls toolcore in-process);
- mcp: an MCP tools/call through our /mcp gateway to a tool synced from an upstream MCP server
  (the reference MCPServer of the tests, stateless, in its own process) vs the same SDK client
  calling the upstream directly; both clients are long-lived and speak 2026-07-28.

Run:  .venv/bin/python -m devtools.devstack exec --data-dir .data/bench -- \
          .venv/bin/python bench/tools_overhead.py [--calls 300]
Writes bench/results/tools_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
RESULTS = BASE_DIR / "bench" / "results" / "tools_overhead.json"
ARGS = {"microdao_id": "microdao:7"}


async def _target_app(scope, receive, send):  # a minimal ASGI target: answers a JSON list
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'[{"id":"proj-1","name":"DAARION Messenger"}]'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve_target(port: int) -> None:
    import uvicorn

    uvicorn.run(_target_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(samples, 0.5), 3),
        "p99_ms": round(_pct(samples, 0.99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def sync_upstream(url: str) -> None:
    """Registers the reference upstream as `bench-mcp` (prefix bmcp) and syncs its tools."""
    import socket

    from apps.tools.models import McpServer, Tool
    from apps.tools.services import mcp_server_create, mcp_server_sync

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    Tool.objects.filter(tool_id__startswith="bmcp.").delete()
    McpServer.objects.filter(name="bench-mcp").delete()
    server = mcp_server_create(name="bench-mcp", prefix="bmcp", url=url, sync=False)
    report = mcp_server_sync(server=server)
    assert report.ok and "bmcp.add" in report.created, report


async def mcp_pair(our_url: str, upstream_url: str, token: str, opts: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Interleaved tools/call of `add`: straight to the upstream, and as bmcp.add through /mcp."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    ours_http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", "X-Agent-Id": "agent:bench"}, timeout=10)
    direct_http = httpx2.AsyncClient(timeout=10)
    direct, through = [], []
    async with (
        Client(streamable_http_client(upstream_url, http_client=direct_http)) as upstream,
        Client(streamable_http_client(f"{our_url}/mcp", http_client=ours_http)) as ours,
    ):
        assert upstream.protocol_version == ours.protocol_version == "2026-07-28"
        for i in range(opts.warmup + opts.calls):
            t0 = time.perf_counter()
            a = await upstream.call_tool("add", {"a": i, "b": 1})
            t1 = time.perf_counter()
            b = await ours.call_tool("bmcp.add", {"a": i, "b": 1})
            t2 = time.perf_counter()
            assert not a.is_error and not b.is_error, (a, b)
            assert a.structured_content == b.structured_content == {"result": i + 1}, (a, b)
            if i >= opts.warmup:
                direct.append((t1 - t0) * 1000)
                through.append((t2 - t1) * 1000)
    return direct, through


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--serve-target", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve_target:
        serve_target(opts.serve_target)
        return 0

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")
    os.environ["TOOLS_HTTP_ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ.setdefault("DAARION_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import httpx
    from django.core.management import call_command

    from apps.access.services import service_token_create
    from devtools.testing import free_port, start_asgi_server

    call_command("migrate", verbosity=0)
    from apps.tools.models import Tool
    from apps.tools.services import tool_create

    target_port = free_port()
    target = subprocess.Popen([sys.executable, __file__, "--serve-target", str(target_port)], cwd=BASE_DIR)
    target_url = f"http://127.0.0.1:{target_port}/projects"
    Tool.objects.filter(tool_id="bench.projects").delete()
    tool_create(
        tool_id="bench.projects",
        name="bench",
        executor="http",
        target=target_url,
        timeout=5.0,
        input_schema={"type": "object", "properties": {"microdao_id": {"type": "string"}}, "required": ["microdao_id"]},
        output_schema={"type": "array", "items": {"type": "object"}},
    )
    token = service_token_create(name=f"bench-{time.time_ns()}", scopes=["tools"]).raw
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "apps.tools.tests.mcp_upstream", "--port", str(upstream_port), "--stateless"],
        cwd=BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
    sync_upstream(upstream_url)
    env = {**os.environ, "DATABASE_POOL": "1", "DAARION_LOG_LEVEL": "WARNING"}
    server = start_asgi_server(env, Path(tempfile.mkdtemp(prefix="bench-tools-")), name="bench-web")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.post(target_url, json={}, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        payload = {"tool_id": "bench.projects", "agent_id": "agent:bench", "microdao_id": "microdao:7", "args": ARGS}
        direct_body = {"args": ARGS, "context": {"agent_id": "agent:bench", "microdao_id": "microdao:7"}}
        headers = {"Authorization": f"Bearer {token}"}
        direct, via_api, floor = [], [], []
        with httpx.Client(timeout=10) as client:
            for i in range(opts.warmup + opts.calls):
                # Interleaved, so both see the same machine load.
                t0 = time.perf_counter()
                assert client.post(target_url, json=direct_body).status_code == 200
                t1 = time.perf_counter()
                answer = client.post(f"{server.url}/internal/tools/call", json=payload, headers=headers)
                t2 = time.perf_counter()
                assert answer.status_code == 200 and answer.json()["ok"], answer.text
                t3 = time.perf_counter()
                assert client.get(f"{server.url}/internal/whoami", headers=headers).status_code == 200
                t4 = time.perf_counter()
                if i >= opts.warmup:
                    floor.append((t4 - t3) * 1000)
                    direct.append((t1 - t0) * 1000)
                    via_api.append((t2 - t1) * 1000)

        async def in_process() -> tuple[list[float], list[float]]:
            from apps.tools.services import tool_call

            raw, core = [], []
            async with httpx.AsyncClient(timeout=10) as client:
                for i in range(opts.warmup + opts.calls):
                    t0 = time.perf_counter()
                    assert (await client.post(target_url, json=direct_body)).status_code == 200
                    t1 = time.perf_counter()
                    outcome = await tool_call(
                        tool_id="bench.projects", agent_id="agent:bench", microdao_id="microdao:7", args=ARGS
                    )
                    t2 = time.perf_counter()
                    assert outcome.ok, outcome
                    if i >= opts.warmup:
                        raw.append((t1 - t0) * 1000)
                        core.append((t2 - t1) * 1000)
            return raw, core

        direct_async, core = asyncio.run(in_process())
        mcp_direct, mcp_through = asyncio.run(mcp_pair(server.url, upstream_url, token, opts))
    finally:
        server.stop()
        target.terminate()
        target.wait(10)
        upstream.terminate()
        upstream.wait(10)

    report = {
        "calls": opts.calls,
        "api": {
            "direct": _summary(direct),
            "through_toolcore": _summary(via_api),
            "overhead_p50_ms": round(_pct(via_api, 0.5) - _pct(direct, 0.5), 3),
            "overhead_p99_ms": round(_pct(via_api, 0.99) - _pct(direct, 0.99), 3),
            # The web stack alone (uvicorn, middleware, Ninja, token auth) on an authenticated
            # GET /internal/whoami: the part of the API overhead that is not toolcore's.
            "web_stack_floor": _summary(floor),
            "overhead_beyond_web_stack_p50_ms": round(_pct(via_api, 0.5) - _pct(direct, 0.5) - _pct(floor, 0.5), 3),
        },
        "in_process": {
            "direct": _summary(direct_async),
            "through_toolcore": _summary(core),
            "overhead_p50_ms": round(_pct(core, 0.5) - _pct(direct_async, 0.5), 3),
            "overhead_p99_ms": round(_pct(core, 0.99) - _pct(direct_async, 0.99), 3),
        },
        "mcp": {
            "direct": _summary(mcp_direct),
            "through_toolcore": _summary(mcp_through),
            "overhead_p50_ms": round(_pct(mcp_through, 0.5) - _pct(mcp_direct, 0.5), 3),
            "overhead_p99_ms": round(_pct(mcp_through, 0.99) - _pct(mcp_direct, 0.99), 3),
            "target_p50_overhead_ms": 3.0,
        },
        "target_p50_overhead_ms": 2.0,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("api", "in_process", "mcp"):
        part = report[name]
        print(
            f"{name:10s} direct p50 {part['direct']['p50_ms']:.3f} ms p99 {part['direct']['p99_ms']:.3f} ms | "
            f"toolcore p50 {part['through_toolcore']['p50_ms']:.3f} ms p99 {part['through_toolcore']['p99_ms']:.3f} ms | "
            f"overhead p50 {part['overhead_p50_ms']:.3f} ms p99 {part['overhead_p99_ms']:.3f} ms"
        )
    print(
        f"api web-stack floor (GET /internal/whoami) p50 {report['api']['web_stack_floor']['p50_ms']:.3f} ms; "
        f"api overhead beyond it p50 {report['api']['overhead_beyond_web_stack_p50_ms']:.3f} ms"
    )
    print(f"wrote {RESULTS.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
