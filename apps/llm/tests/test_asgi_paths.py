"""The proxy's hot path under the real ASGI server: /internal and /v1 run without the browser
middleware (daarion/asgi.py), the admin keeps it, and errors keep their envelope."""

from __future__ import annotations

from apps.llm.tests.conftest import wait_for


def test_llm_paths_skip_browser_middleware(api, stub_model, llm_headers) -> None:
    body = {"model": "dagi-stub", "messages": [{"role": "user", "content": "hi there"}], "metadata": {"agent_id": "agent:sofia"}}
    assert wait_for(lambda: api.post("/internal/llm/proxy", json=body, headers=llm_headers).status_code == 200)
    answer = api.post("/internal/llm/proxy", json=body, headers=llm_headers)
    assert answer.status_code == 200 and answer.json()["content"]
    assert answer.headers["x-request-id"]  # our own async middleware still runs
    assert "x-daarion-overhead-ms" in answer.headers
    for browser_header in ("x-frame-options", "set-cookie", "vary", "cross-origin-opener-policy"):
        assert browser_header not in answer.headers, browser_header
    v1 = api.post(
        "/v1/chat/completions",
        json={"model": "dagi-stub", "messages": body["messages"]},
        headers={**llm_headers, "X-Agent-Id": "agent:sofia"},
    )
    assert v1.status_code == 200 and v1.json()["choices"][0]["message"]["content"]
    assert "x-frame-options" not in v1.headers


def test_other_service_apis_skip_it_too(api, make_token, bearer) -> None:
    answer = api.get("/internal/whoami", headers=bearer(make_token(scopes=["memory"])))
    assert answer.status_code == 200 and "x-frame-options" not in answer.headers


def test_errors_keep_the_envelope_on_the_lean_paths(api, llm_headers) -> None:
    missing = api.post("/internal/llm/proxy", json={"model": "x", "messages": []})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "unauthorized"
    unknown = api.get("/v1/no-such-route", headers=llm_headers)
    # /v1 speaks OpenAI's error shape (apps/llm/errors.py), the middleware's own 404 included.
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "invalid_request_error"
    bad = api.post("/v1/chat/completions", content=b"{not json", headers={**llm_headers, "Content-Type": "application/json"})
    assert bad.status_code in (400, 422) and "error" in bad.json()


def _assert_api_headers(answer, *, streamed: bool = False) -> None:
    assert answer.headers["x-content-type-options"] == "nosniff"
    if streamed:
        assert answer.headers["cache-control"] == "no-cache, no-transform"  # the stream's own choice is kept
        assert "content-length" not in answer.headers
    else:
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-length"] == str(len(answer.content))
        assert "transfer-encoding" not in answer.headers


def test_api_answers_carry_a_length_nosniff_and_no_store(api, stub_model, llm_headers, make_token, bearer) -> None:
    messages = [{"role": "user", "content": "hi there"}]
    v1 = {"model": "dagi-stub", "messages": messages}
    headers = {**llm_headers, "X-Agent-Id": "agent:sofia"}
    assert wait_for(lambda: api.post("/v1/chat/completions", json=v1, headers=headers).status_code == 200)
    _assert_api_headers(api.post("/v1/chat/completions", json=v1, headers=headers))  # the fast lane
    _assert_api_headers(api.get("/v1/models", headers=llm_headers))  # the hot path
    _assert_api_headers(api.get("/internal/whoami", headers=bearer(make_token(scopes=["memory"]))))  # the lean chain
    _assert_api_headers(api.post("/v1/chat/completions", json={**v1, "model": "no-such"}, headers=headers))  # an error
    with api.stream(
        "POST", "/internal/llm/stream", json={**v1, "metadata": {"agent_id": "agent:sofia"}}, headers=llm_headers
    ) as stream:
        assert stream.status_code == 200
        _assert_api_headers(stream, streamed=True)
        stream.read()
    login = api.get("/admin/login/")  # the browser chain keeps Django's own caching headers
    assert "no-cache" in login.headers["cache-control"]


def test_admin_keeps_the_browser_middleware(api) -> None:
    login = api.get("/admin/login/")
    assert login.status_code == 200
    assert login.headers["x-frame-options"] == "DENY"
    assert "csrftoken" in login.headers.get("set-cookie", "")
    assert api.get("/admin/llm/usagerecord/dashboard/", follow_redirects=False).status_code == 302


def test_a_chunked_body_over_the_limit_is_refused_on_the_hot_path(api, llm_headers) -> None:
    from django.conf import settings

    def body():  # no Content-Length: sent chunked, so only the handler's own count can stop it
        chunk = b" " * 65536
        for _ in range(settings.MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    headers = {**llm_headers, "Content-Type": "application/json", "x-request-id": "req-chunked-413"}
    answer = api.post("/v1/chat/completions", content=body(), headers=headers)
    assert answer.status_code == 413
    # /v1 answers in OpenAI's shape (apps/llm/errors.py), this early refusal included.
    assert answer.json()["error"]["code"] == "payload_too_large" and "param" in answer.json()["error"]
    assert answer.headers["x-request-id"] == "req-chunked-413"  # the caller's id, as on every answer

    generated = api.post("/internal/tools/call", content=body(), headers={**llm_headers, "Content-Type": "application/json"})
    assert generated.status_code == 413
    assert generated.headers["x-request-id"].startswith("req-")


def test_the_request_signals_the_hot_path_skips_have_only_djangos_receivers() -> None:
    # HotPathHandler sends neither signal (daarion/asgi.py): that is safe only while their
    # receivers are Django's housekeeping of the calling thread's database and cache
    # connections, which the hot path never opens, and of a per-request urlconf, which it never
    # sets. A new receiver must be run there too.
    from django.core import signals
    from django.core.cache import close_caches
    from django.core.handlers.base import reset_urlconf
    from django.db import close_old_connections, reset_queries

    import weakref

    def receivers(signal) -> set:
        found = (entry[1] for entry in signal.receivers)
        return {r() if isinstance(r, weakref.ReferenceType) else r for r in found}

    assert receivers(signals.request_started) <= {reset_queries, close_old_connections}
    assert receivers(signals.request_finished) <= {close_old_connections, close_caches, reset_urlconf}
