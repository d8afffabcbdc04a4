"""/v1 errors as the official openai SDK reads OpenAI's: the exception class (by status),
`err.code`, `err.param` and `err.type`, for each way a call fails; /internal keeps the house
envelope."""

from __future__ import annotations

import openai
import pytest

from apps.llm import services
from apps.llm.tests.conftest import wait_for

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def sdk(asgi_server, make_token, stub_model, live):
    live()
    token = make_token(scopes=["llm"], agents=["agent:errors"])
    return openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=token, max_retries=0, timeout=30)


def _raised(call, cls):
    with pytest.raises(cls) as caught:
        call()
    return caught.value


def test_unknown_model_is_model_not_found(sdk):
    err = _raised(lambda: sdk.chat.completions.create(model="no-such-model", messages=HELLO), openai.NotFoundError)
    assert (err.status_code, err.code, err.param, err.type) == (404, "model_not_found", "model", "invalid_request_error")
    assert "no-such-model" in err.message
    err = _raised(lambda: sdk.embeddings.create(model="no-such-model", input="x"), openai.NotFoundError)
    assert err.code == "model_not_found"


def test_bad_token_is_invalid_api_key(asgi_server, stub_model):
    bad = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key="dst_wrong", max_retries=0)
    err = _raised(lambda: bad.chat.completions.create(model="dagi-stub", messages=HELLO), openai.AuthenticationError)
    assert (err.status_code, err.code, err.type) == (401, "invalid_api_key", "invalid_request_error")
    err = _raised(lambda: bad.models.list(), openai.AuthenticationError)  # a route off the fast lane
    assert err.code == "invalid_api_key"


def test_a_token_without_the_scope_or_agent_is_403(asgi_server, make_token, sdk):
    memory_only = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=make_token(scopes=["memory"]), max_retries=0)
    err = _raised(lambda: memory_only.chat.completions.create(model="dagi-stub", messages=HELLO), openai.PermissionDeniedError)
    assert err.code == "scope_not_allowed"
    err = _raised(
        lambda: sdk.chat.completions.create(model="dagi-stub", messages=HELLO, extra_headers={"X-Agent-Id": "agent:other"}),
        openai.PermissionDeniedError,
    )
    assert err.code == "agent_not_allowed"
    # A token bound to several agents names the one it acts for (Principal.acting_agent): a
    # missing X-Agent-Id is OpenAI's missing parameter.
    several = openai.OpenAI(
        base_url=f"{asgi_server.url}/v1",
        max_retries=0,
        api_key=make_token(scopes=["llm"], agents=["agent:errors", "agent:other"]),
    )
    err = _raised(lambda: several.chat.completions.create(model="dagi-stub", messages=HELLO), openai.BadRequestError)
    assert (err.status_code, err.code, err.param) == (400, "missing_required_parameter", "X-Agent-Id")


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"messages": []}, "messages", "invalid_value"),
        ({"temperature": 9}, "temperature", "invalid_value"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", "invalid_value"),
        (
            {"tools": [{"type": "function", "function": {"description": "no name"}}]},
            "tools.0.function.name",
            "missing_required_parameter",
        ),
        ({"stream": "yes please"}, "stream", "invalid_type"),
    ],
)
def test_an_invalid_body_is_400_naming_the_field(sdk, fields, param, code):
    body = {"model": "dagi-stub", "messages": HELLO, **fields}
    err = _raised(lambda: sdk.chat.completions.create(**body), openai.BadRequestError)
    assert (err.status_code, err.type, err.param, err.code) == (400, "invalid_request_error", param, code)


def test_unreadable_json_is_400_without_a_code(asgi_server, make_token, stub_model, live):
    import httpx

    live()
    answer = httpx.post(
        f"{asgi_server.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {make_token(scopes=['llm'])}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {"message": answer.json()["error"]["message"], "type": "invalid_request_error", "param": None, "code": None}
    }


def test_a_rate_limit_is_rate_limit_exceeded_with_retry_after(sdk, live):
    services.rate_limit_policy_create(scope="agent", subject="agent:errors", rpm=1)
    live()
    caught: list[openai.RateLimitError] = []

    def limited() -> bool:
        try:
            sdk.chat.completions.create(model="dagi-stub", messages=HELLO)
        except openai.RateLimitError as exc:
            caught.append(exc)
            return True
        return False

    assert wait_for(limited)
    err = caught[0]
    assert (err.status_code, err.code, err.type) == (429, "rate_limit_exceeded", "requests")
    assert int(err.response.headers["retry-after"]) >= 1


def test_a_spent_budget_is_insufficient_quota(asgi_server, make_token, stub_provider, make_model, live):
    make_model("dagi-pricey", stub_provider, "dagi-stub", input_price_per_mtok=100_000, output_price_per_mtok=100_000)
    token = make_token(scopes=["llm"], agents=["agent:spender"])
    services.rate_limit_policy_create(scope="agent", subject="agent:spender", budget_usd="0.0005", budget_period="day")
    live()
    sdk = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=token, max_retries=0)
    caught: list[openai.RateLimitError] = []

    def refused() -> bool:
        try:
            sdk.chat.completions.create(model="dagi-pricey", messages=HELLO)
        except openai.RateLimitError as exc:
            caught.append(exc)
            return True
        return False

    assert wait_for(refused)
    err = caught[0]
    assert (err.status_code, err.code, err.type) == (429, "insufficient_quota", "insufficient_quota")
    assert int(err.response.headers["retry-after"]) >= 1


def test_an_upstream_429_that_outlives_retries_and_fallbacks_is_a_429_with_its_retry_after(
    asgi_server, make_token, fake_provider, make_model, fake_stats, live
):
    # Retry-After 30 s is above LLM_MAX_RETRY_AFTER: no wait here, the fallback is tried, and
    # it is rate limited too; the caller is told to come back when the upstream said.
    make_model("busy-backup", fake_provider, "error:429:7")
    make_model("busy", fake_provider, "error:429:30", fallbacks=["busy-backup"])
    live()
    sdk = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=make_token(scopes=["llm"]), max_retries=0)
    err = _raised(lambda: sdk.chat.completions.create(model="busy", messages=HELLO), openai.RateLimitError)
    assert (err.status_code, err.code) == (429, "rate_limit_exceeded")
    assert err.response.headers["retry-after"] == "30"
    assert fake_stats()["requests"] == {"error:429:30": 1, "error:429:7": 1}
    # The same on /internal, in the house envelope.
    import httpx

    answer = httpx.post(
        f"{asgi_server.url}/internal/llm/proxy",
        json={"model": "busy", "messages": HELLO},
        headers={"Authorization": f"Bearer {make_token(scopes=['llm'])}"},
    )
    assert answer.status_code == 429 and answer.headers["retry-after"] == "30"
    assert answer.json()["error"]["type"] == "upstream_rate_limited" and "details" in answer.json()["error"]


def test_an_upstream_failure_is_a_server_error(asgi_server, make_token, fake_provider, make_model, live):
    make_model("broken", fake_provider, "error:500")
    live()
    sdk = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=make_token(scopes=["llm"]), max_retries=0)
    err = _raised(lambda: sdk.chat.completions.create(model="broken", messages=HELLO), openai.InternalServerError)
    assert (err.status_code, err.type, err.code) == (502, "server_error", "upstream_error")


def test_internal_keeps_the_house_envelope(api, llm_headers, stub_model, live):
    live()
    answer = api.post("/internal/llm/proxy", json={"model": "dagi-stub", "messages": []}, headers=llm_headers)
    assert answer.status_code == 422
    assert set(answer.json()["error"]) == {"type", "message", "details"}


def test_a_failure_mid_stream_is_an_openai_error_chunk(asgi_server, make_token, fake_provider, make_model, live):
    make_model("half", fake_provider, "badstream")
    live()
    sdk = openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=make_token(scopes=["llm"]), max_retries=0)
    stream = sdk.chat.completions.create(model="half", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert caught.value.body["type"] == "server_error" and caught.value.body["code"] == "upstream_error"
    assert set(caught.value.body) == {"message", "type", "param", "code"}
