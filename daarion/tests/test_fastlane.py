"""The fast lane answers exactly what the full Django + Ninja stack answers: the same requests,
good and bad, sent over real HTTP to a server with the lane and to one without it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from daarion import fastlane
from devtools.testing import ServerProcess, start_asgi_server

HELLO = [{"role": "user", "content": "hello lane"}]
# Headers a caller acts on; x-daarion-overhead-ms is a timing and differs by nature.
COMPARED_HEADERS = (
    "content-type",
    "x-request-id",
    "x-daarion-provider",
    "x-daarion-model-resolved",
    "retry-after",
    "allow",
    "x-vercel-ai-ui-message-stream",
    "cache-control",
)


@pytest.fixture(scope="module")
def without_lane(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    server = start_asgi_server(
        {**server_env, "DATABASE_POOL": "1", "DAARION_FAST_LANE": "0"}, tmp_path_factory.mktemp("no-lane"), name="web-no-lane"
    )
    yield server
    server.stop()


@pytest.fixture
def registry(transactional_db, make_token):
    from apps.llm import services

    provider = services.provider_create(name="stub", kind="stub")
    model = services.logical_model_create(name="dagi-stub")
    services.deployment_create(logical_model=model, provider=provider, upstream_model="dagi-stub")
    return {
        "llm": make_token(scopes=["llm"]),
        "memory": make_token(scopes=["memory"]),
        "sofia": make_token(scopes=["llm"], agents=["agent:sofia"]),
    }


def _cases(tokens: dict[str, str]) -> list[tuple[str, str, dict[str, str], bytes | None]]:
    """(name, path, headers, body) for both routes: answers, and each way a request fails."""

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[name]}", "Content-Type": "application/json"}

    def body(**fields) -> bytes:
        return json.dumps({"model": "dagi-stub", "messages": HELLO, **fields}).encode()

    cases = []
    for path in ("/internal/llm/proxy", "/v1/chat/completions"):
        cases += [
            ("answer", path, auth("llm"), body(metadata={"agent_id": "agent:sofia", "channel_id": "c1"})),
            (
                "tools",
                path,
                auth("llm"),
                body(
                    tools=[{"type": "function", "function": {"name": "projects.list"}}],
                    messages=[{"role": "user", "content": "which project?"}],
                ),
            ),
            ("no token", path, {"Content-Type": "application/json"}, body()),
            ("not bearer", path, {"Authorization": "Basic abc"}, body()),
            ("unknown token", path, {"Authorization": "Bearer nope"}, body()),
            ("wrong scope", path, auth("memory"), body()),
            ("bad json without a token", path, {}, b"{not json"),
            ("bad json", path, auth("llm"), b"{not json"),
            ("NaN", path, auth("llm"), b'{"model": "dagi-stub", "messages": [], "temperature": NaN}'),
            ("deeply nested", path, auth("llm"), b'{"model": "dagi-stub", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
            ("empty body", path, auth("llm"), b""),
            ("a list", path, auth("llm"), b"[1, 2]"),
            ("no messages", path, auth("llm"), json.dumps({"model": "dagi-stub"}).encode()),
            ("bad role and temperature", path, auth("llm"), body(messages=[{"role": "robot"}], temperature=7)),
            ("unknown model", path, auth("llm"), json.dumps({"model": "nope", "messages": HELLO}).encode()),
            ("NUL in the query", path + "?x=%00", auth("llm"), body()),
            ("too large", path, {**auth("llm"), "Content-Length": str(100 * 1024 * 1024)}, None),
        ]
    cases += [
        ("other agent", "/internal/llm/proxy", auth("sofia"), body(metadata={"agent_id": "agent:pm"})),
        ("bound token, no agent named", "/internal/llm/proxy", auth("sofia"), body()),
        ("bad X-Agent-Id", "/v1/chat/completions", {**auth("llm"), "X-Agent-Id": "agent sofia"}, body()),
        ("other agent by header", "/v1/chat/completions", {**auth("sofia"), "X-Agent-Id": "agent:pm"}, body()),
        ("n above 1", "/v1/chat/completions", auth("llm"), body(n=2)),
    ]
    responses = "/v1/responses"

    def ask(**fields) -> bytes:
        return json.dumps({"model": "dagi-stub", "input": "hello lane", **fields}).encode()

    cases += [
        ("answer", responses, auth("llm"), ask(instructions="Be terse.")),
        ("not stored", responses, auth("llm"), ask(store=False)),
        ("message input", responses, auth("llm"), ask(input=[{"role": "user", "content": "hi"}])),
        ("no token", responses, {"Content-Type": "application/json"}, ask()),
        ("wrong scope", responses, auth("memory"), ask()),
        ("bad json", responses, auth("llm"), b"{not json"),
        ("empty body", responses, auth("llm"), b""),
        ("no input", responses, auth("llm"), json.dumps({"model": "dagi-stub"}).encode()),
        ("unknown model", responses, auth("llm"), ask(model="nope")),
        ("unknown previous response", responses, auth("llm"), ask(previous_response_id="resp_nope")),
        ("unsupported background", responses, auth("llm"), ask(background=True)),
        ("too large", responses, {**auth("llm"), "Content-Length": str(100 * 1024 * 1024)}, None),
    ]
    return cases


def _without_ids(data: object) -> object:
    """A Responses answer with its generated ids and clock readings left out (they differ by nature)."""
    if isinstance(data, dict):
        return {k: _without_ids(v) for k, v in data.items() if k not in ("id", "created_at", "completed_at")}
    if isinstance(data, list):
        return [_without_ids(item) for item in data]
    return data


def _answer(base_url: str, name: str, path: str, headers: dict[str, str], content: bytes | None) -> dict:
    headers = {**headers, "x-request-id": f"parity-{abs(hash(name)) % 10**8}"}
    if content is None:  # a Content-Length the server must refuse before reading anything
        with httpx.Client(base_url=base_url, timeout=30) as client:
            response = client.post(path, headers=headers, content=b"{}")
    else:
        response = httpx.post(base_url + path, headers=headers, content=content, timeout=30)
    try:
        data = response.json()
    except ValueError:
        data = response.text
    if isinstance(data, dict):
        data.pop("created", None)  # a clock reading
    if path.startswith("/v1/responses"):
        data = _without_ids(data)
    return {"status": response.status_code, "body": data, "headers": {h: response.headers.get(h) for h in COMPARED_HEADERS}}


def test_the_fast_lane_answers_what_the_full_stack_answers(asgi_server, without_lane, registry):
    from apps.llm.tests.conftest import wait_for

    probe = (
        "answer",
        "/internal/llm/proxy",
        {"Authorization": f"Bearer {registry['llm']}"},
        json.dumps({"model": "dagi-stub", "messages": HELLO}).encode(),
    )
    for server in (asgi_server, without_lane):  # both have picked up the model
        assert wait_for(lambda server=server: _answer(server.url, *probe)["status"] == 200)
    statuses = set()
    for name, path, headers, content in _cases(registry):
        if content is None:
            headers = {k: v for k, v in headers.items() if k != "Content-Length"}
            content = b"x" * (3 * 1024 * 1024)  # over MAX_BODY_BYTES, with its real length
        fast = _answer(asgi_server.url, name, path, headers, content)
        full = _answer(without_lane.url, name, path, headers, content)
        assert fast == full, f"{name} on {path}"
        statuses.add(fast["status"])
    # The cases reach every kind of answer, so the comparison covers each handler.
    assert statuses >= {200, 400, 401, 403, 404, 413, 422}


def test_a_streamed_completion_reads_the_same_through_both(asgi_server, without_lane, registry):
    from apps.llm.tests.conftest import wait_for

    def stream(base_url: str, path: str) -> tuple[int, str | None, list[str]]:
        body = {"model": "dagi-stub", "messages": HELLO, "stream": True, "metadata": {"agent_id": "agent:sofia"}}
        with httpx.stream(
            "POST",
            base_url + path,
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {registry['llm']}", "x-request-id": "parity-stream"},
        ) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data:")]
        kinds = []
        for line in lines:
            payload = line[5:].strip()
            if payload == "[DONE]":
                kinds.append("[DONE]")
                continue
            chunk = json.loads(payload)
            chunk.pop("created", None)
            kinds.append(json.dumps(chunk, sort_keys=True))
        return r.status_code, r.headers.get("content-type"), kinds

    assert wait_for(lambda: stream(asgi_server.url, "/v1/chat/completions")[0] == 200)
    assert wait_for(lambda: stream(without_lane.url, "/v1/chat/completions")[0] == 200)
    fast = stream(asgi_server.url, "/v1/chat/completions")
    assert fast == stream(without_lane.url, "/v1/chat/completions")
    assert fast[2][-1] == "[DONE]" and len(fast[2]) >= 3


def test_the_fast_routes_are_the_ninja_operations_they_stand_in_for():
    # If a route's view, auth or body schema changes in its Ninja registration, the lane must
    # change with it: the lane reads its table from here, so compare the two.
    from django.urls import resolve
    from ninja.operation import PathView

    for path, route in fastlane.routes().items():
        # Ninja's URL pattern points at a wrapper closing over the route's PathView.
        [path_view] = [c.cell_contents for c in resolve(path).func.__closure__ if isinstance(c.cell_contents, PathView)]
        [operation] = [op for op in path_view.operations if route.method in op.methods]
        assert operation.view_func is route.view, path
        assert operation.auth_callbacks == [route.auth], path
        [body_model] = [m for m in operation.models if m.__ninja_param_source__ == "body"]
        assert body_model.model_fields["payload"].annotation is route.schema, path


def test_the_lane_knows_which_releases_it_mirrors():
    from django.core.checks import run_checks

    from daarion.fastlane.versions import MIRRORED

    # The pinned requirements are the releases mirrored: no warning, the lane is on.
    assert fastlane.version_mismatches() == []
    assert not [m for m in run_checks() if m.id == "daarion.W002"]
    assert set(fastlane.routes()) == {"/internal/llm/proxy", "/v1/chat/completions", "/v1/responses"}
    # Another release (as after an upgrade) is named, and a missing package too.
    other = {**MIRRORED, "django": "4.2", "no-such-distribution": "1.0"}
    assert fastlane.version_mismatches(other) == [
        f"django {'.'.join(__import__('django').__version__.split('.')[:2])} is installed; the fast lane mirrors 4.2",
        "no-such-distribution is not installed; the fast lane mirrors 1.0",
    ]
