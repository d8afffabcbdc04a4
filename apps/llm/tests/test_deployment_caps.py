"""A deployment's own rpm/tpm cap holds for every kind of call (one routing loop): with
`rpm_limit: 1` and no other deployment, the second call in the minute is refused, whether it
is a plain chat, a streamed chat or an embeddings call: a 429 with Retry-After where the door
answers before streaming (/internal/llm/proxy, /v1), the same error as the stream's `error`
chunk on /internal/llm/stream (which answers at once and heartbeats until the first token)."""

from __future__ import annotations

import json

import pytest

from apps.llm import services

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]


def _capped(make_model, stub_provider, name: str, upstream: str, **fields) -> None:
    model = make_model(name, stub_provider, upstream, **fields)
    services.deployment_update(deployment=model.deployments.get(), rpm_limit=1)


def _refused(response) -> dict:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert int(response.headers["Retry-After"]) >= 1
    return error


def _chunks(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


@pytest.mark.parametrize("door", ["/v1/chat/completions", "/internal/llm/proxy"])
def test_a_capped_deployment_refuses_the_second_chat(api, stub_provider, make_model, llm_headers, live, door):
    _capped(make_model, stub_provider, "capped-chat", "dagi-stub")
    live()
    body = {"model": "capped-chat", "messages": HELLO}
    if door == "/v1/chat/completions":
        body["stream"] = True
    first = api.post(door, json=body, headers=llm_headers)
    assert first.status_code == 200, first.text
    error = _refused(api.post(door, json=body, headers=llm_headers))
    if door.startswith("/v1"):  # OpenAI's code for every 429; the message says which limit
        assert error["code"] == "rate_limit_exceeded" and "own rpm/tpm cap" in error["message"]
    else:
        assert error["type"] == "deployment_rate_limited"
        assert [a["error_type"] for a in error["details"]["attempts"]] == ["deployment_rate_limited"]


def test_a_capped_deployment_refuses_the_second_ui_stream(api, stub_provider, make_model, llm_headers, live):
    _capped(make_model, stub_provider, "capped-ui", "dagi-stub")
    live()
    body = {"model": "capped-ui", "messages": HELLO}
    first = _chunks(api.post("/internal/llm/stream", json=body, headers=llm_headers).text)
    assert first[-1]["type"] == "finish"
    second = _chunks(api.post("/internal/llm/stream", json=body, headers=llm_headers).text)
    assert [c["type"] for c in second] == ["start", "start-step", "error"]
    assert second[-1]["errorText"].startswith("deployment_rate_limited: ")


def test_a_capped_deployment_refuses_the_second_embeddings_call(api, stub_provider, make_model, llm_headers, live):
    _capped(make_model, stub_provider, "capped-embed", "stub-embed-384", can_embed=True)
    live()
    body = {"model": "capped-embed", "input": "hello"}
    first = api.post("/v1/embeddings", json=body, headers=llm_headers)
    assert first.status_code == 200, first.text
    error = _refused(api.post("/v1/embeddings", json=body, headers=llm_headers))
    assert error["code"] == "rate_limit_exceeded" and "own rpm/tpm cap" in error["message"]


def test_a_capped_deployment_falls_back_before_refusing(api, stub_provider, make_model, llm_headers, live):
    """The cap is a skip like a cooldown: a fallback model with room answers the stream."""
    make_model("roomy", stub_provider, "dagi-stub")
    _capped(make_model, stub_provider, "capped-first", "dagi-stub", fallbacks=["roomy"])
    live()
    body = {"model": "capped-first", "messages": HELLO}
    served = [
        _chunks(api.post("/internal/llm/stream", json=body, headers=llm_headers).text)[-1]["messageMetadata"]["model_resolved"]
        for _ in range(2)
    ]
    assert served == ["capped-first", "roomy"]
