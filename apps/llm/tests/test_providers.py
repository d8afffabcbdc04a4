"""Provider building blocks: the registry decorator, error classification, the Anthropic
message conversion and the stub's deterministic answers."""

from __future__ import annotations

import httpx
import pytest

from apps.llm.providers import PROVIDER_CLASSES, ChatRequest, register_provider
from apps.llm.providers.anthropic import from_anthropic, to_anthropic
from apps.llm.providers.base import BaseProvider, error_from_status, parse_retry_after
from apps.llm.providers.stub import answer, dimensions_of, embed_text


def test_every_kind_has_a_client():
    from apps.llm.choices import ProviderKind

    assert set(ProviderKind.values) <= set(PROVIDER_CLASSES)


def test_a_kind_cannot_be_registered_twice():
    with pytest.raises(RuntimeError, match="registered twice"):

        @register_provider("openai")
        class Another(BaseProvider):
            pass


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (429, "rate_limited", True),
        (500, "server", True),
        (503, "server", True),
        (408, "server", True),
        (400, "bad_request", False),
        (404, "bad_request", False),
        (401, "auth", False),
        (403, "auth", False),
    ],
)
def test_status_classification(status, kind, retryable):
    error = error_from_status(status, "x", httpx.Headers({"retry-after": "2"}))
    assert (error.kind, error.retryable) == (kind, retryable)


def test_retry_after_parsing():
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None


def test_anthropic_conversion_merges_turns_and_maps_tools():
    request = ChatRequest(
        model="claude",
        messages=[
            {"role": "system", "content": "one"},
            {"role": "system", "content": "two"},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": "calling",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "a", "arguments": '{"x": 1}'}},
                    {"id": "c2", "function": {"name": "b", "arguments": "not json"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r1"},
            {"role": "tool", "tool_call_id": "c2", "content": "r2"},
        ],
        tools=[{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "a"}},
        temperature=0.5,
    )
    body = to_anthropic(request)
    assert body["system"] == "one\n\ntwo"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][1] == {"type": "tool_use", "id": "c1", "name": "a", "input": {"x": 1}}
    assert body["messages"][1]["content"][2]["input"] == {}
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["c1", "c2"], "tool results share one user turn"
    assert body["tool_choice"] == {"type": "tool", "name": "a"}
    assert body["tools"][0]["input_schema"] == {"type": "object"}


def test_anthropic_response_conversion():
    response = from_anthropic(
        {
            "content": [{"type": "text", "text": "Hi "}, {"type": "tool_use", "id": "t", "name": "a", "input": {"k": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 4, "output_tokens": 2},
        }
    )
    assert (response.content, response.finish_reason, response.usage.total_tokens) == ("Hi ", "tool_calls", 6)
    assert response.tool_calls[0].arguments == '{"k": 1}'


def test_stub_is_deterministic_and_honours_max_tokens():
    request = ChatRequest(messages=[{"role": "user", "content": "one two three four"}])
    assert answer(request).content == answer(request).content == "[stub] You said: one two three four"
    short = answer(ChatRequest(messages=request.messages, max_tokens=2))
    assert short.finish_reason == "length" and short.content == "[stub] You"


def test_stub_only_calls_tools_when_asked_about_projects():
    tools = [{"type": "function", "function": {"name": "weather"}}, {"type": "function", "function": {"name": "projects-list"}}]
    unrelated = answer(ChatRequest(messages=[{"role": "user", "content": "weather?"}], tools=tools))
    assert unrelated.tool_calls == []
    asked = answer(ChatRequest(messages=[{"role": "user", "content": "Project status?"}], tools=tools))
    assert asked.tool_calls[0].name == "projects-list"
    refused = answer(ChatRequest(messages=[{"role": "user", "content": "Project status?"}], tools=tools, tool_choice="none"))
    assert refused.tool_calls == []


def test_stub_embeddings():
    assert dimensions_of("stub-embed-1024") == 1024 and dimensions_of("stub") == 384
    vector = embed_text("", 8)
    assert vector == [1.0, 0, 0, 0, 0, 0, 0, 0], "empty text still gets a unit vector"
    assert sum(x * x for x in embed_text("hello world", 32)) == pytest.approx(1.0)
