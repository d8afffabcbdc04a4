"""The playground's stream endpoint without a browser: refusals in the house envelope, a
logical model's answer as a UI message stream ending with usage, cost and latency."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from apps.llm import usage
from apps.llm.models import UsageRecord


def _chunks(response) -> list[dict]:
    async def read() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    body = async_to_sync(read)().decode()
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]


@pytest.mark.django_db
def test_the_stream_is_for_staff_only(client):
    answer = client.post(reverse("console:playground-stream"), {"kind": "model", "target": "x", "message": "hi"})
    assert answer.status_code == 403 and answer.json()["error"]["type"] == "forbidden"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("form", "fragment"),
    [
        ({"kind": "robot", "target": "x", "message": "hi"}, "kind must be"),
        ({"kind": "agent", "target": "", "message": "hi"}, "choose a agent"),
        ({"kind": "model", "target": "dagi-stub", "message": "   "}, "the message must be"),
    ],
)
def test_bad_input_is_422(admin_client, form, fragment):
    answer = admin_client.post(reverse("console:playground-stream"), form)
    assert answer.status_code == 422 and fragment in answer.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_an_unknown_agent_is_refused_before_a_run_exists(admin_client):
    answer = admin_client.post(reverse("console:playground-stream"), {"kind": "agent", "target": "agent:nobody", "message": "hi"})
    assert answer.status_code == 404 and answer.json()["error"]["type"] == "agent_not_found"


@pytest.mark.django_db(transaction=True)
def test_a_model_answers_as_a_stream_with_usage_cost_and_latency(admin_client):
    from apps.demo import registry as demo

    demo.seed()
    answer = admin_client.post(
        reverse("console:playground-stream"), {"kind": "model", "target": "dagi-stub", "message": "Hello there"}
    )
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/event-stream")
    chunks = _chunks(answer)
    kinds = [c["type"] for c in chunks]
    assert kinds[0] == "start" and kinds[-1] == "finish" and "text-delta" in kinds
    [summary] = [c["messageMetadata"]["console"] for c in chunks if c["type"] == "message-metadata"]
    assert summary["usage"]["total_tokens"] > 0 and summary["cost_usd"] is not None and summary["latency_ms"] > 0
    assert summary["model"] == "dagi-stub"
    usage.push_pending()
    usage.drain_to_database()
    record = UsageRecord.objects.get(request_id=summary["request_id"])
    assert (record.channel_id, record.status, record.stream) == ("console:playground", "ok", True)


@pytest.mark.django_db(transaction=True)
def test_an_unknown_model_ends_the_stream_with_an_error_chunk(admin_client):
    answer = admin_client.post(
        reverse("console:playground-stream"), {"kind": "model", "target": "no-such-model", "message": "Hello"}
    )
    chunks = _chunks(answer)
    assert chunks[-1]["type"] == "error" and "no-such-model" in chunks[-1]["errorText"]
