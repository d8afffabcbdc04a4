"""What the official openai SDK sends through /v1 reaches the upstream as sent, parameter by
parameter (the recording fake upstream keeps every body); providers that cannot take one
refuse it by name or drop it and say so; reasoning and embeddings options come through."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import openai
import pytest

from apps.llm import services

HELLO = [{"role": "user", "content": "hello params"}]
TOOL = {
    "type": "function",
    "function": {"name": "projects.list", "description": "List projects", "parameters": {"type": "object", "properties": {}}},
}
# Every OpenAI chat parameter besides model/messages/temperature/max_tokens/tools/tool_choice/
# response_format, with a value that is not its default.
PARAMS = {
    "stop": ["END", "STOP"],
    "seed": 42,
    "top_p": 0.5,
    "presence_penalty": 0.25,
    "frequency_penalty": -0.5,
    "logprobs": True,
    "top_logprobs": 2,
    "n": 2,
    "user": "user-7",
    "parallel_tool_calls": False,
    "reasoning_effort": "low",
    "metadata": {"topic": "tests"},
    "max_completion_tokens": 77,
}


@pytest.fixture
def token(make_token) -> str:
    return make_token(scopes=["llm"])


@pytest.fixture
def sdk(asgi_server, token) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{asgi_server.url}/v1", api_key=token, max_retries=0, timeout=30)


@pytest.fixture
def upstream(fake_provider, make_model, fake_stats, live):
    """Models on the recording upstream; returns a function giving the bodies it received."""
    make_model("up-echo", fake_provider, "echo")
    make_model("up-reasoning", fake_provider, "reasoning")
    make_model("up-embed", fake_provider, "embed", can_embed=True)
    live()
    return lambda: [b["body"] for b in fake_stats()["bodies"]]


@pytest.fixture
def claude(fake_llm, make_model, live):
    provider = services.provider_create(
        name="claude", kind="anthropic", base_url=fake_llm, api_key="sk-ant-123456789", max_retries=0
    )
    make_model("claude-strict", provider, "claude-test")
    make_model("claude-lenient", provider, "claude-test", drop_unsupported_params=True)
    make_model("claude-thinking", provider, "thinking-claude")
    live()


def test_every_chat_parameter_reaches_an_openai_compatible_upstream_as_sent(sdk, upstream):
    completion = sdk.chat.completions.create(
        model="up-echo",
        messages=HELLO,
        tools=[TOOL],
        max_tokens=50,
        extra_body={"custom_flag": {"nested": [1, 2]}, "top_k": 5},
        **PARAMS,
    )
    [sent] = upstream()
    for name, value in PARAMS.items():
        assert sent[name] == value, name
    assert sent["max_tokens"] == 50, "max_tokens stays max_tokens, max_completion_tokens stays itself"
    assert sent["custom_flag"] == {"nested": [1, 2]} and sent["top_k"] == 5, "extra_body keys pass through"
    assert sent["model"] == "echo" and sent["tools"][0]["function"]["name"] == "projects_list"
    # The answer carries what the upstream answered for them: two choices, with logprobs.
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[1].message.content.endswith("(choice 1)")
    assert completion.choices[0].logprobs.content[0].token.startswith("echo")


def test_parameters_in_a_stream_too(sdk, upstream):
    chunks = list(
        sdk.chat.completions.create(
            model="up-echo", messages=HELLO, stream=True, seed=3, stop="X", extra_body={"custom_flag": True}
        )
    )
    [sent] = upstream()
    assert (sent["seed"], sent["stop"], sent["custom_flag"], sent["stream"]) == (3, "X", True, True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hello params"


def test_n_above_one_is_refused_when_streamed(sdk, upstream):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="up-echo", messages=HELLO, stream=True, n=2)
    assert (caught.value.param, caught.value.code) == ("n", "unsupported_parameter")
    assert upstream() == []


def test_the_internal_proxy_takes_the_same_parameters(api, upstream, token):
    body = {
        "model": "up-echo",
        "messages": HELLO,
        **{k: v for k, v in PARAMS.items() if k not in ("metadata", "n")},
        "extra_body": {"custom_flag": "yes"},
    }
    answer = api.post("/internal/llm/proxy", json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    [sent] = upstream()
    for name, value in body.items():
        if name not in ("model", "messages", "extra_body"):
            assert sent[name] == value, name
    assert sent["custom_flag"] == "yes"
    assert "metadata" not in sent, "metadata on /internal is ours (agent, microdao, channel), not the upstream's"


def test_a_provider_that_cannot_take_a_parameter_refuses_it_by_name(sdk, claude, fake_stats):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="claude-strict", messages=HELLO, seed=1)
    err = caught.value
    assert (err.status_code, err.param, err.code) == (400, "seed", "unsupported_parameter")
    assert "seed" in err.message
    assert fake_stats()["bodies"] == [], "nothing went upstream"


def test_or_drops_it_and_says_so_when_its_model_says(sdk, claude, fake_stats):
    raw = sdk.chat.completions.with_raw_response.create(
        model="claude-lenient",
        messages=HELLO,
        seed=1,
        presence_penalty=0.5,
        top_p=0.9,
        stop="END",
        user="u-1",
        max_completion_tokens=99,
    )
    assert raw.headers["x-daarion-dropped-params"] == "seed, presence_penalty"
    assert raw.parse().choices[0].message.content.startswith("echo: hello params")
    sent = fake_stats()["last"]["body"]
    assert (sent["top_p"], sent["stop_sequences"], sent["metadata"], sent["max_tokens"]) == (0.9, ["END"], {"user_id": "u-1"}, 99)
    assert "seed" not in sent and "presence_penalty" not in sent


def test_advisory_labels_never_refuse_a_call(sdk, stub_model, live):
    live()
    raw = sdk.chat.completions.with_raw_response.create(
        model="dagi-stub", messages=HELLO, metadata={"a": "b"}, user="u-2", store=False
    )
    assert raw.http_response.status_code == 200
    assert set(raw.headers["x-daarion-dropped-params"].split(", ")) == {"user", "metadata", "store"}


def test_the_stub_refuses_what_it_cannot_do(sdk, stub_model, live):
    live()
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="dagi-stub", messages=HELLO, top_p=0.3)
    assert caught.value.param == "top_p"
    capped = sdk.chat.completions.create(model="dagi-stub", messages=HELLO, max_completion_tokens=2)
    assert capped.choices[0].message.content == "[stub] You" and capped.choices[0].finish_reason == "length"


# --- reasoning ---------------------------------------------------------------------------


def test_reasoning_content_is_kept_in_answers_and_usage(sdk, upstream):
    completion = sdk.chat.completions.create(model="up-reasoning", messages=HELLO)
    message = completion.choices[0].message
    assert message.content == "echo: hello params"
    assert message.model_extra["reasoning_content"] == "thinking about: hello params"
    assert completion.usage.completion_tokens_details.reasoning_tokens == 4


def test_reasoning_content_is_kept_in_stream_deltas(sdk, upstream):
    chunks = list(
        sdk.chat.completions.create(model="up-reasoning", messages=HELLO, stream=True, stream_options={"include_usage": True})
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == "thinking about: hello params"
    assert "".join(d.content or "" for d in deltas) == "echo: hello params"
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 4


def test_the_ai_sdk_stream_has_reasoning_parts(api, upstream, token):
    body = {"model": "up-reasoning", "messages": HELLO}
    with api.stream("POST", "/internal/llm/stream", json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        parts = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:") and "[DONE]" not in line]
    kinds = [p["type"] for p in parts]
    assert kinds.index("reasoning-start") < kinds.index("reasoning-end") < kinds.index("text-start")
    assert "".join(p["delta"] for p in parts if p["type"] == "reasoning-delta") == "thinking about: hello params"
    proxied = api.post("/internal/llm/proxy", json=body, headers={"Authorization": f"Bearer {token}"}).json()
    assert proxied["reasoning_content"] == "thinking about: hello params"


def test_anthropic_thinking_maps_to_reasoning_content(sdk, claude):
    completion = sdk.chat.completions.create(model="claude-thinking", messages=HELLO)
    assert completion.choices[0].message.model_extra["reasoning_content"] == "thinking about: hello params"
    chunks = list(sdk.chat.completions.create(model="claude-thinking", messages=HELLO, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas) == "thinking about: hello params"


# --- embeddings --------------------------------------------------------------------------


def test_embeddings_dimensions_and_format_are_forwarded_and_honoured(sdk, upstream):
    floats = sdk.embeddings.create(model="up-embed", input=["alpha", "beta"], dimensions=64, encoding_format="float", user="u-9")
    assert [len(d.embedding) for d in floats.data] == [64, 64]
    [sent] = upstream()
    assert (sent["dimensions"], sent["user"], sent["input"]) == (64, "u-9", ["alpha", "beta"])
    packed = sdk.embeddings.with_raw_response.create(
        model="up-embed", input="alpha", dimensions=16, encoding_format="base64"
    ).http_response.json()
    vector = struct.unpack("<16f", base64.b64decode(packed["data"][0]["embedding"]))
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-5), "16 numbers of a unit vector"


@pytest.mark.parametrize("given", [[101, 102, 103], [[101, 102], [7]]])
def test_token_id_input_is_forwarded(sdk, upstream, given):
    result = sdk.embeddings.create(model="up-embed", input=given, encoding_format="float")
    [sent] = upstream()
    assert sent["input"] == ([given] if isinstance(given[0], int) else given)
    assert len(result.data) == (1 if isinstance(given[0], int) else 2)


def test_providers_that_cannot_refuse_dimensions_and_tokens(sdk, stub_provider, make_model, live):
    make_model("stub-embed", stub_provider, "stub-embed-16", can_embed=True)
    live()
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model="stub-embed", input="x", dimensions=8)
    assert (caught.value.param, caught.value.code) == ("dimensions", "unsupported_parameter")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model="stub-embed", input=[[1, 2, 3]])
    assert (caught.value.param, caught.value.code) == ("input", "unsupported_parameter")
    assert len(sdk.embeddings.create(model="stub-embed", input="x").data[0].embedding) == 16


def test_langchain_style_token_input_on_the_raw_api(api, upstream, token):
    # LangChain's OpenAIEmbeddings sends lists of token ids by default.
    answer = httpx.post(
        f"{api.base_url}/v1/embeddings",
        json={"model": "up-embed", "input": [[1, 2], [3]]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 2


def test_drop_unsupported_params_is_part_of_the_registry_document(db):
    from apps.llm.models import LogicalModel
    from apps.llm.selectors import load_registry, registry_export
    from apps.registry.documents import registry_apply

    registry_apply(
        prune=False,
        document={
            "providers": {"stub": {"kind": "stub"}},
            "models": {"lenient": {"provider": "stub", "name": "dagi-stub", "drop_unsupported_params": True}},
        },
    )
    assert LogicalModel.objects.get(name="lenient").drop_unsupported_params
    assert load_registry().models["lenient"].drop_params
    assert registry_export()["models"]["lenient"]["drop_unsupported_params"] is True


def test_default_values_are_never_refused(sdk, stub_model, live):
    # LangChain and others send n: 1 and friends explicitly; they ask for nothing special.
    live()
    completion = sdk.chat.completions.create(
        model="dagi-stub",
        messages=HELLO,
        n=1,
        logprobs=False,
        top_p=1,
        presence_penalty=0,
        frequency_penalty=0,
        parallel_tool_calls=True,
    )
    assert completion.choices[0].message.content == "[stub] You said: hello params"


def test_max_completion_tokens_is_max_tokens_for_kinds_that_only_know_that(sdk, fake_llm, make_model, fake_stats, live):
    provider = services.provider_create(
        name="deepseek-fake", kind="deepseek", base_url=fake_llm, api_key="sk-ds-123456789", max_retries=0
    )
    make_model("ds", provider, "reasoning")
    live()
    sdk.chat.completions.create(model="ds", messages=HELLO, max_completion_tokens=33, seed=5)
    sent = fake_stats()["last"]["body"]
    assert (sent["max_tokens"], sent["seed"]) == (33, 5) and "max_completion_tokens" not in sent


def test_the_internal_proxy_refuses_n_above_one_in_the_house_envelope(api, stub_model, token, live):
    live()
    answer = api.post(
        "/internal/llm/proxy",
        json={"model": "dagi-stub", "messages": HELLO, "n": 2},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "type": "unsupported_parameter",
        "message": answer.json()["error"]["message"],
        "details": {"param": "n"},
    }


def test_the_registry_document_round_trips_drop_unsupported_params(db):
    # Exported by apps.llm, applied by the registry API's documents: the key is known to both.
    from apps.llm.selectors import registry_export
    from apps.registry.documents import registry_apply

    registry_apply(
        prune=False,
        document={
            "providers": {"stub": {"kind": "stub"}},
            "models": {"lenient": {"provider": "stub", "name": "dagi-stub", "drop_unsupported_params": True}},
        },
    )
    document = registry_export()
    registry_apply(
        document={
            **document,
            "models": {**document["models"], "lenient": {**document["models"]["lenient"], "drop_unsupported_params": False}},
        },
        prune=False,
    )
    from apps.llm.models import LogicalModel

    assert not LogicalModel.objects.get(name="lenient").drop_unsupported_params
