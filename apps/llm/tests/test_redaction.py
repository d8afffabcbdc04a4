"""Credentials an upstream repeats in its error text never leave the process: not in the
answer (message, details.attempts, a stream's errorText), not in a log line, not in a usage row.
The fake upstream's `leak` model answers 401 repeating the credential headers it was sent."""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import async_to_sync

from apps.llm import gateway, services
from apps.llm.models import UsageRecord
from apps.llm.tests.conftest import usage_rows
from daarion.infra.errors import DaarionError

PROVIDER_KEY = "sk-fake-key-123456"  # fake_provider's stored key
AGENT_KEY = "sk-agent-own-key-77aa11"
HELLO = [{"role": "user", "content": "hello"}]


def _no_key(text: str, *keys: str) -> None:
    for secret in keys:
        assert secret not in text


def _body(request_id: str, **extra) -> dict:
    return {
        "model": "leaky",
        "messages": HELLO,
        "request_id": request_id,
        "metadata": {"agent_id": "agent:sofia", "microdao_id": "microdao:7"},
        **extra,
    }


def test_the_providers_key_echoed_by_the_upstream_reaches_no_caller(
    api, fake_provider, make_model, llm_headers, live, asgi_server
):
    make_model("leaky", fake_provider, "leak:401")
    live()
    proxy = api.post("/internal/llm/proxy", json=_body("req-leak-1"), headers=llm_headers)
    assert proxy.status_code >= 400
    error = proxy.json()["error"]
    # The upstream's message is still there, with the key cut out of it.
    assert "[redacted]" in json.dumps(error["details"]["attempts"])
    _no_key(proxy.text, PROVIDER_KEY)

    v1 = api.post("/v1/chat/completions", json={"model": "leaky", "messages": HELLO}, headers=llm_headers)
    assert v1.status_code >= 400
    _no_key(v1.text, PROVIDER_KEY)

    stream = api.post("/internal/llm/stream", json=_body("req-leak-2"), headers=llm_headers)
    assert '"errorText"' in stream.text or stream.status_code >= 400
    _no_key(stream.text, PROVIDER_KEY)

    v1_stream = api.post("/v1/chat/completions", json={"model": "leaky", "messages": HELLO, "stream": True}, headers=llm_headers)
    _no_key(v1_stream.text, PROVIDER_KEY)

    rows = usage_rows(count=1, request_id="req-leak-1")
    assert rows
    for row in UsageRecord.objects.all():
        _no_key(json.dumps({f.name: str(getattr(row, f.name)) for f in row._meta.fields}), PROVIDER_KEY)
    _no_key(asgi_server.log_path.read_text(errors="replace"), PROVIDER_KEY)


def test_an_agents_own_key_echoed_by_the_upstream_stays_out_of_errors_and_logs(
    transactional_db, fake_provider, make_model, caplog
):
    make_model("leaky", fake_provider, "leak:401")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DaarionError) as caught:
        gateway.chat_completion_sync(model="leaky", messages=HELLO, agent_id="agent:a", credentials={"fake": AGENT_KEY})
    text = caught.value.message + json.dumps(caught.value.details, default=str)
    assert "[redacted]" in text
    _no_key(text, AGENT_KEY, PROVIDER_KEY)

    async def stream() -> list:
        return [e async for e in gateway.stream_chat_completion(model="leaky", messages=HELLO, credentials={"fake": AGENT_KEY})]

    with pytest.raises(DaarionError) as streamed:
        async_to_sync(stream)()
    _no_key(streamed.value.message + json.dumps(streamed.value.details, default=str), AGENT_KEY)
    _no_key(caplog.text, AGENT_KEY, PROVIDER_KEY)
    usage_rows(count=2)
    for row in UsageRecord.objects.all():
        _no_key(json.dumps({f.name: str(getattr(row, f.name)) for f in row._meta.fields}), AGENT_KEY)


def test_anthropics_x_api_key_echoed_is_redacted(transactional_db, fake_llm, make_model):
    provider = services.provider_create(
        name="claude", kind="anthropic", base_url=fake_llm, api_key="sk-ant-provider-5566", timeout_seconds=2.0, max_retries=0
    )
    make_model("claude-leaky", provider, "leak:403")
    with pytest.raises(DaarionError) as caught:
        gateway.chat_completion_sync(model="claude-leaky", messages=HELLO, credentials={"claude": "sk-ant-agent-7788"})
    text = caught.value.message + json.dumps(caught.value.details, default=str)
    assert "[redacted]" in text
    _no_key(text, "sk-ant-agent-7788", "sk-ant-provider-5566")


def test_a_key_the_upstream_repeats_in_a_successful_answer_reaches_no_caller(api, fake_provider, make_model, llm_headers, live):
    """The fake upstream's `echokey` model answers 200 with the credential it was sent."""
    make_model("echoing", fake_provider, "echokey")
    live()
    body = {"model": "echoing", "messages": HELLO}
    answers = {
        "proxy": api.post("/internal/llm/proxy", json=body, headers=llm_headers),
        "v1": api.post("/v1/chat/completions", json=body, headers=llm_headers),
        "ui stream": api.post("/internal/llm/stream", json=body, headers=llm_headers),
        "v1 stream": api.post("/v1/chat/completions", json={**body, "stream": True}, headers=llm_headers),
    }
    for door, answer in answers.items():
        assert answer.status_code == 200, (door, answer.text)
        assert "got" in answer.text, door  # the answer itself still arrives (streams: word by word)
        assert "[redacted]" in answer.text, door
        _no_key(answer.text, PROVIDER_KEY)
