"""Observability over real HTTP: /metrics (parsed with prometheus_client's parser) after a
proxy call, a tool call, a memory store and query, and an agent run — counts written by the
web server and by the Celery worker processes alike —, and one OpenTelemetry trace for an
agent run across the web server and the agents worker, exported over OTLP to a receiver in
this test, whose traceparent reaches the upstream model and an HTTP tool."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.agents.models import Run
from apps.agents.tests.conftest import wait_until
from devtools.testing import ServerProcess, inside_one_minute, start_asgi_server, start_celery_worker

AGENT = "/internal/agents/agent:sofia"
FOLLOWUP_ARGS = {"microdao_id": "microdao:7", "title": "Send the meeting notes"}

Samples = dict[tuple[str, frozenset], float]


def scrape(client: httpx.Client, headers: dict[str, str]) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)


def _ended(run_id: str) -> Run:
    wait_until(lambda: Run.objects.get(pk=run_id).status not in ("queued", "running"), f"run {run_id} to end", 30)
    return Run.objects.get(pk=run_id)


@pytest.fixture
def metrics_headers(make_token, bearer) -> dict[str, str]:
    return bearer(make_token(scopes=["metrics"]))


def test_metrics_needs_a_token_with_the_metrics_scope(api, make_token, bearer, metrics_headers):
    missing = api.get("/metrics")
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "unauthorized"
    wrong = api.get("/metrics", headers=bearer(make_token(scopes=["llm", "agents"])))
    assert wrong.status_code == 403 and wrong.json()["error"]["type"] == "scope_not_allowed"
    assert api.get("/metrics", headers=bearer("not-a-token")).status_code == 401
    assert api.post("/metrics", headers=metrics_headers).status_code == 405
    assert api.get("/metrics", headers=metrics_headers).status_code == 200


def test_metrics_count_each_door_and_the_workers(
    api,
    agents_headers,
    sofia,
    llm_routes,
    scripted,
    tools,
    make_token,
    bearer,
    metrics_headers,
    celery_worker,
):
    model = llm_routes("obs-metrics")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Done."}])
    sofia(model)
    before = scrape(api, metrics_headers)

    # The LLM proxy, through the fast lane.
    llm = bearer(make_token(scopes=["llm"]))
    answer = api.post(
        "/v1/chat/completions", headers=llm, json={"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert answer.status_code == 200, answer.text
    # A tool call, and one refused (the agent may not use it).
    tools_token = bearer(make_token(scopes=["tools"]))
    called = api.post(
        "/internal/tools/call",
        headers=tools_token,
        json={"tool_id": "followups.create", "agent_id": "agent:sofia", "microdao_id": "microdao:7", "args": FOLLOWUP_ARGS},
    )
    assert called.status_code == 200 and called.json()["ok"], called.text
    denied = api.post(
        "/internal/tools/call",
        headers=tools_token,
        json={"tool_id": "vault.read", "agent_id": "agent:sofia", "microdao_id": "microdao:7", "args": FOLLOWUP_ARGS},
    )
    assert denied.status_code == 403, denied.text
    # Memory: a store (embedded by the worker) and a query.
    memory = bearer(make_token(scopes=["memory"]))
    stored = api.post(
        "/internal/agent-memory/store",
        headers=memory,
        json={"agent_id": "agent:obs", "microdao_id": "microdao:7", "kind": "kb", "content": {"text": "the quarterly plan"}},
    )
    assert stored.status_code == 201, stored.text
    queried = api.post("/internal/agent-memory/query", headers=memory, json={"agent_id": "agent:obs", "query": "plan"})
    assert queried.status_code == 200, queried.text
    # An agent run, executed by the agents worker.
    started = api.post(f"{AGENT}/runs", headers=agents_headers, json={"message": "Make a follow-up"})
    assert started.status_code == 202, started.text
    assert _ended(started.json()["id"]).status == "succeeded"

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return total(scrape(api, metrics_headers), name, **labels) - total(before, name, **labels) >= by

    # Written by the worker processes: wait for them (the embedding job runs after the answer).
    wait_until(lambda: grew("daarion_memory_embeddings_total", status="ready"), "the worker's embedding count", 30)
    wait_until(lambda: grew("daarion_agent_turns_total", agent="agent:sofia", status="succeeded"), "the run's count")
    after = scrape(api, metrics_headers)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("daarion_llm_requests_total", model="dagi-stub", provider="stub", status="ok") == 1
    assert delta("daarion_llm_tokens_total", model="dagi-stub", direction="completion") > 0
    assert delta("daarion_llm_request_duration_seconds_count", model="dagi-stub", provider="stub") == 1
    # The agent's two model calls were counted by the agents worker, with the scripted usage.
    assert delta("daarion_llm_requests_total", model=model, provider="scripted", status="ok") == 2
    assert delta("daarion_llm_tokens_total", model=model, direction="prompt") == 20
    assert delta("daarion_llm_time_to_first_token_seconds_count", model=model) == 2
    assert delta("daarion_http_requests_total", route="/v1/chat/completions", method="POST", status="200") == 1
    assert delta("daarion_http_request_duration_seconds_count", route="/internal/tools/call", method="POST") == 2
    # By template, not by path: the run's own id is not a label.
    assert delta("daarion_http_requests_total", route="/internal/agents/<agent_id>/runs", method="POST", status="202") == 1
    # The REST call and the run's call of the same tool; the refusal under its own status.
    assert delta("daarion_tool_calls_total", tool="followups.create", status="ok") == 2
    assert delta("daarion_tool_calls_total", tool="vault.read", status="denied") == 1
    assert delta("daarion_tool_call_duration_seconds_count", tool="followups.create") == 2
    assert delta("daarion_memory_stores_total", kind="kb") == 1
    assert delta("daarion_memory_queries_total", status="ok") >= 2  # ours and the run's recall
    assert delta("daarion_memory_query_duration_seconds_count") >= 2
    assert delta("daarion_celery_tasks_total", task="memory.embed_entries", state="success") >= 1
    assert delta("daarion_celery_tasks_total", task="agents.execute_run", state="success") == 1
    assert delta("daarion_agent_turns_total", agent="agent:sofia", status="succeeded") == 1
    assert delta("daarion_agent_turn_steps_count", agent="agent:sofia") == 1
    assert delta("daarion_agent_turn_steps_sum", agent="agent:sofia") == 2
    # Read at scrape time.
    assert ("daarion_celery_queue_length", frozenset({("queue", "agents")})) in after
    assert total(after, "daarion_embedding_queue_depth") >= 0
    assert not any(name == "daarion_scrape_errors" for name, _ in after)


def test_refusals_by_a_rate_limit_are_counted_by_kind(api, llm_routes, make_agents, make_token, bearer, metrics_headers):
    from apps.llm import services

    llm_routes("obs-unused")  # the stub route `dagi-stub`
    make_agents("agent:obs-limited")
    services.rate_limit_policy_create(scope="agent", subject="agent:obs-limited", rpm=1)
    llm = bearer(make_token(scopes=["llm"]))
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}], "metadata": {"agent_id": "agent:obs-limited"}}
    inside_one_minute(15)
    # The server sees the new policy within a check interval: wait for its first refusal.
    wait_until(lambda: api.post("/internal/llm/proxy", headers=llm, json=body).status_code == 429, "the policy to refuse")
    before = scrape(api, metrics_headers)
    statuses = [api.post("/internal/llm/proxy", headers=llm, json=body).status_code for _ in range(2)]
    assert statuses == [429, 429], statuses
    after = scrape(api, metrics_headers)
    assert (
        total(after, "daarion_ratelimit_refusals_total", kind="rate_limited")
        - total(before, "daarion_ratelimit_refusals_total", kind="rate_limited")
        == 2
    )
    assert (
        total(after, "daarion_llm_requests_total", model="dagi-stub", status="refused")
        - total(before, "daarion_llm_requests_total", model="dagi-stub", status="refused")
        == 2
    )
    # ... and by the policy that refused: its scope and the limit reached.
    assert (
        total(after, "daarion_ratelimit_policy_refusals_total", scope="agent", limit="requests")
        - total(before, "daarion_ratelimit_policy_refusals_total", scope="agent", limit="requests")
        == 2
    )


def test_fallbacks_and_cooldowns_entered_are_counted(api, llm_routes, make_token, bearer, metrics_headers):
    """A model whose only deployment cannot be reached falls back to the stub each call; the
    third failure in a minute cools the deployment down (LLM_COOLDOWN_FAILURES, 3)."""
    from apps.llm import services

    llm_routes("obs-unused")  # the stub route `dagi-stub`
    down = services.provider_create(
        name="obs-down", kind="openai_compatible", base_url="http://127.0.0.1:9/v1", timeout_seconds=2.0, max_retries=0
    )
    model = services.logical_model_create(name="obs-flaky", fallbacks=["dagi-stub"])
    deployment = services.deployment_create(logical_model=model, provider=down, upstream_model="flaky")
    llm = bearer(make_token(scopes=["llm"]))
    body = {"model": "obs-flaky", "messages": [{"role": "user", "content": "hi"}]}
    wait_until(
        lambda: api.post("/internal/llm/proxy", headers=llm, json=body).status_code == 200, "the server to route the new model"
    )
    before = scrape(api, metrics_headers)
    served = [api.post("/internal/llm/proxy", headers=llm, json=body).json()["model_resolved"] for _ in range(3)]
    assert served == ["dagi-stub"] * 3
    after = scrape(api, metrics_headers)
    assert (
        total(after, "daarion_llm_fallbacks_total", model="obs-flaky", served="dagi-stub")
        - total(before, "daarion_llm_fallbacks_total", model="obs-flaky", served="dagi-stub")
        >= 2
    )
    assert total(after, "daarion_llm_cooldowns_total", deployment=str(deployment.pk), scope="shared") == 1


# --- tracing -------------------------------------------------------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver and an HTTP tool target in one server of this test."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.tool_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    outer._spans(raw)
                    body, kind = b"", "application/x-protobuf"
                else:
                    with outer._lock:
                        outer.tool_headers.append({k.lower(): v for k, v in self.headers.items()})
                    body, kind = json.dumps({"echo": json.loads(raw)["args"]}).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="otlp-receiver").start()

    def _spans(self, raw: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest.FromString(raw)
        found = []
        for resource in request.resource_spans:
            service = next((a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), "")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {}
                    for a in span.attributes:
                        value = a.value
                        kind = value.WhichOneof("value")
                        attributes[a.key] = (
                            [v.string_value for v in value.array_value.values] if kind == "array_value" else getattr(value, kind)
                        )
                    found.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "attributes": attributes,
                            "service": service,
                        }
                    )
        with self._lock:
            self.spans.extend(found)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traced(server_env, receiver, tmp_path_factory) -> Iterator[ServerProcess]:
    """A web server and an agents worker that export their spans to `receiver`; runs go to a
    queue of their own, so the session's agents worker cannot take this test's run."""
    env = {
        **server_env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "DAARION_AGENTS_RUN_QUEUE": "agents-traced",
        "TOOLS_HTTP_ALLOWED_HOSTS": receiver.url.split("//")[1],
        "DATABASE_POOL": "1",
    }
    logs = tmp_path_factory.mktemp("traced")
    web = start_asgi_server({**env, "OTEL_SERVICE_NAME": "web"}, logs, name="traced-web")
    worker = start_celery_worker(
        {**env, "OTEL_SERVICE_NAME": "worker"}, logs, queues="agents-traced", pool="threads", concurrency=4, name="traced-agents"
    )
    yield web
    worker.stop()
    web.stop()


def test_one_trace_for_an_agent_run_across_web_worker_model_and_tool(
    api,
    agents_headers,
    sofia,
    llm_routes,
    scripted,
    tools,
    receiver,
    traced,
    make_token,
    bearer,
):
    from apps.tools.services import tool_create

    tool_create(
        tool_id="trace.echo",
        name="Echo",
        executor="http",
        target=f"{receiver.url}/tool",
        input_schema={"type": "object"},
        allowed_agents=["agent:sofia"],
        timeout=5.0,
    )
    model = llm_routes("obs-traced")
    scripted.script(model, [{"calls": [("trace__echo", {"say": "hi"})]}, {"text": "Echoed."}])
    sofia(model)
    with httpx.Client(base_url=traced.url, timeout=30) as client:
        tools_headers = bearer(make_token(scopes=["tools"]))
        wait_until(
            lambda: any(
                t["id"] == "trace.echo" for t in client.get("/internal/tools", headers=tools_headers).json().get("tools", [])
            ),
            "the tool in the traced server's registry",
        )
        started = client.post(
            f"{AGENT}/runs", headers={**agents_headers, "x-request-id": "req-traced-1"}, json={"message": "Echo hi"}
        )
    assert started.status_code == 202, started.text
    run = _ended(started.json()["id"])
    assert run.status == "succeeded", run.error

    def server_span() -> dict[str, Any] | None:
        return next(
            (
                s
                for s in list(receiver.spans)
                if s["name"] == "POST /internal/agents/<agent_id>/runs"
                and s["attributes"].get("http.response.header.x_request_id") == ["req-traced-1"]
            ),
            None,
        )

    wait_until(lambda: server_span() is not None, "the web server's span")
    root = server_span()
    trace_id = root["trace_id"]
    assert root["parent_id"] == "" and root["service"] == "web"
    assert root["attributes"]["http.response.status_code"] == 202
    wanted = {
        "run/agents.execute_run",
        "invoke_agent agent:sofia",
        "agent.recall",
        f"chat {model}",
        "execute_tool trace.echo",
        "agent.remember",
    }
    wait_until(lambda: wanted <= {s["name"] for s in receiver.trace(trace_id)}, "the worker's spans in the trace")
    spans = receiver.trace(trace_id)
    by_id = {s["span_id"]: s for s in spans}

    def ancestors(span: dict[str, Any]) -> list[str]:
        names = []
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            names.append(span["name"])
        return names

    chats = [s for s in spans if s["name"] == f"chat {model}"]
    assert len(chats) == 2  # one per model call
    for chat in chats:
        assert chat["service"] == "worker"
        assert ancestors(chat)[:2] == ["invoke_agent agent:sofia", "run/agents.execute_run"]
        assert chat["attributes"]["gen_ai.request.model"] == model
        assert chat["attributes"]["gen_ai.usage.input_tokens"] == 10
        assert chat["attributes"]["gen_ai.usage.output_tokens"] == 5
    assert sorted(c["attributes"]["gen_ai.response.finish_reasons"][0] for c in chats) == ["stop", "tool_calls"]
    tool_span = next(s for s in spans if s["name"] == "execute_tool trace.echo")
    assert "invoke_agent agent:sofia" in ancestors(tool_span)
    assert tool_span["attributes"]["daarion.tool.status"] == "ok"
    recall = next(s for s in spans if s["name"] == "agent.recall")
    assert ancestors(recall)[0] == "invoke_agent agent:sofia"
    # The worker continued the web request's trace (the task's headers), to the root.
    assert ancestors(chats[0])[-1] == root["name"]
    assert ancestors(chats[0])[2] == "apply_async/agents.execute_run"  # the web process's publish
    # The official instrumentations' spans are in the same trace: the database, Redis, and
    # the HTTP clients that called the model and the tool.
    systems = {(s["attributes"].get("db.system.name") or s["attributes"].get("db.system"), s["service"]) for s in spans}
    assert {("postgresql", "web"), ("postgresql", "worker"), ("redis", "web"), ("redis", "worker")} <= systems, systems

    # Upstream and tool got a traceparent of this trace, whose parent is a span of it.
    upstream = [h.get("traceparent", "") for h in scripted.seen_headers(model)]
    assert len(upstream) == 2 and all(tp.split("-")[1] == trace_id for tp in upstream), upstream
    assert {tp.split("-")[2] for tp in upstream} <= set(by_id)
    tool_parents = [h.get("traceparent", "") for h in receiver.tool_headers]
    assert tool_parents and all(tp.split("-")[1] == trace_id for tp in tool_parents), tool_parents
    assert {tp.split("-")[2] for tp in tool_parents} <= set(by_id)


def test_a_proxy_call_continues_the_callers_trace_with_a_genai_span(llm_routes, make_token, bearer, receiver, traced):
    llm_routes("obs-unused-2")  # the stub route `dagi-stub`
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with httpx.Client(base_url=traced.url, timeout=30) as client:
        answer = client.post(
            "/v1/chat/completions",
            headers={
                **bearer(make_token(scopes=["llm"])),
                "traceparent": f"00-{trace_id}-{parent}-01",
            },
            json={"model": "dagi-stub", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert answer.status_code == 200, answer.text
    wait_until(
        lambda: {"POST /v1/chat/completions", "chat dagi-stub"} <= {s["name"] for s in receiver.trace(trace_id)},
        "the proxy call's spans",
    )
    spans = {s["name"]: s for s in receiver.trace(trace_id)}
    server, chat = spans["POST /v1/chat/completions"], spans["chat dagi-stub"]
    assert server["parent_id"] == parent, "the caller's traceparent is continued"
    assert server["attributes"]["http.response.header.x_request_id"] == [answer.headers["x-request-id"]]
    assert chat["parent_id"] == server["span_id"]
    assert chat["attributes"]["gen_ai.provider.name"] == "stub"
    assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert chat["attributes"]["daarion.llm.status"] == "ok"
