"""Summaries and LLM-proxy embeddings through the real LLM gateway, a real Celery worker
and the fake OpenAI-compatible upstream.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from apps.llm import services as llm_services
from apps.memory import search, services
from apps.memory.choices import EmbeddingStatus
from apps.memory.embeddings import TransientEmbeddingError
from apps.memory.models import MemoryEntry
from apps.memory.selectors import model_spec
from apps.memory.services import store

AGENT = "agent:sofia"
DAO = "microdao:7"


@pytest.fixture
def llm_registry(transactional_db, fake_llm):
    provider = llm_services.provider_create(
        name="fake",
        kind="openai_compatible",
        base_url=fake_llm,
        api_key="sk-fake-key-123456",
        timeout_seconds=5.0,
        max_retries=0,
    )
    for name, upstream, can_embed in (
        ("summarizer", "echo", False),
        ("broken", "error:500", False),
        ("emb", "echo-embed", True),
        ("emb-down", "error-embed", True),
    ):
        model = llm_services.logical_model_create(name=name, can_embed=can_embed)
        llm_services.deployment_create(logical_model=model, provider=provider, upstream_model=upstream, weight=1)
    multilingual = llm_services.logical_model_create(name="multilingual-e5", can_embed=True)
    llm_services.deployment_create(
        logical_model=multilingual, provider=provider, upstream_model="intfloat/multilingual-e5-small", weight=1
    )
    flaky = llm_services.logical_model_create(name="flaky", fallbacks=["summarizer"])
    llm_services.deployment_create(logical_model=flaky, provider=provider, upstream_model="error:500", weight=1)
    return provider


@pytest.fixture
def headers(make_token, bearer):
    return bearer(make_token(scopes=["memory"]))


def _conversation(n: int, channel: str = "ch-1") -> list[str]:
    items = [
        {
            "agent_id": AGENT,
            "microdao_id": DAO,
            "channel_id": channel,
            "kind": "conversation",
            "content": {"user_message": f"question {i}", "agent_reply": f"answer {i}"},
        }
        for i in range(n)
    ]
    return [entry.id for entry, _ in services.memory_store_bulk(items=items)]


def test_summarize_writes_a_summary_entry_linking_its_sources(api, headers, celery_worker, llm_registry):
    ids = _conversation(3)
    response = api.post(
        "/internal/agent-memory/summarize",
        headers=headers,
        json={
            "agent_id": AGENT,
            "microdao_id": DAO,
            "channel_id": "ch-1",
            "model": "summarizer",
            "wait": True,
            "timeout": 60,
        },
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded", job
    summary = MemoryEntry.objects.get(id=job["result"]["summary_id"])
    assert summary.kind == "summary" and summary.channel_id == "ch-1"
    assert summary.meta["sources"] == ids
    assert summary.text.startswith("echo:")  # the fake upstream echoes the prompt's last message
    assert "question 2" in summary.text
    polled = api.get(f"/internal/agent-memory/jobs/{job['id']}", headers=headers)
    assert polled.status_code == 200 and polled.json()["result"]["summary_id"] == summary.id


def test_a_summary_records_the_model_that_answered(api, headers, celery_worker, llm_registry):
    _conversation(2)
    job = api.post(
        "/internal/agent-memory/summarize",
        headers=headers,
        json={
            "agent_id": AGENT,
            "microdao_id": DAO,
            "model": "flaky",
            "wait": True,
            "timeout": 60,
        },
    ).json()
    assert job["status"] == "succeeded", job
    summary = MemoryEntry.objects.get(id=job["result"]["summary_id"])
    # `flaky` failed upstream and its fallback answered: the summary says which.
    assert summary.meta["model"] == "summarizer"
    assert summary.meta["requested_model"] == "flaky"
    assert summary.meta["upstream_model"] == "echo"


def test_summarize_without_waiting_returns_a_job_to_poll(api, headers, celery_worker, llm_registry):
    _conversation(2)
    response = api.post(
        "/internal/agent-memory/summarize", headers=headers, json={"agent_id": AGENT, "microdao_id": DAO, "model": "summarizer"}
    )
    assert response.status_code in (200, 202)
    job_id = response.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = api.get(f"/internal/agent-memory/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded"


def test_summary_failures_are_reported_on_the_job(api, headers, celery_worker, llm_registry):
    _conversation(1)
    unknown = api.post(
        "/internal/agent-memory/summarize",
        headers=headers,
        json={"agent_id": AGENT, "microdao_id": DAO, "model": "no-such-model", "wait": True, "timeout": 60},
    )
    assert unknown.json()["status"] == "failed" and "no-such-model" in unknown.json()["error"]
    empty = api.post(
        "/internal/agent-memory/summarize",
        headers=headers,
        json={"agent_id": "agent:quiet", "microdao_id": DAO, "model": "summarizer", "wait": True, "timeout": 60},
    )
    assert empty.json()["status"] == "succeeded" and empty.json()["result"]["summary_id"] is None


def test_summarize_bad_input_and_isolation(api, headers, make_token, bearer, transactional_db):
    url = "/internal/agent-memory/summarize"
    for body in (
        {"agent_id": AGENT},
        {"agent_id": AGENT, "microdao_id": DAO, "timeout": 500},
        {"agent_id": AGENT, "microdao_id": DAO, "max_entries": 0},
        {"agent_id": "", "microdao_id": DAO},
    ):
        response = api.post(url, headers=headers, json=body)
        assert response.status_code == 422 and response.json()["error"]["type"] == "validation_error"
    sofia = bearer(make_token(scopes=["memory"], agents=[AGENT]))
    assert api.post(url, headers=sofia, json={"agent_id": "agent:pm", "microdao_id": DAO}).status_code == 403
    job = api.post(url, headers=headers, json={"agent_id": "agent:pm", "microdao_id": DAO}).json()
    assert api.get(f"/internal/agent-memory/jobs/{job['id']}", headers=sofia).status_code == 404


def test_llm_proxy_embedding_model(llm_registry, celery_worker):
    services.embedding_model_save(name="llm:emb", backend="llm", dimensions=8, is_active=True)
    try:
        entry, _ = services.memory_store(agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "vectors from the proxy"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            entry.refresh_from_db()
            if entry.embedding_status != EmbeddingStatus.PENDING:
                break
            time.sleep(0.2)
        assert entry.embedding_status == EmbeddingStatus.READY and entry.embedding_model == "llm:emb"
        assert len(entry.embedding) == 8
    finally:
        services.embedding_model_activate(name="hash")


def test_llm_embedding_errors_transient_then_permanent(llm_registry):
    services.embedding_model_save(name="llm:emb-down", backend="llm", dimensions=8)
    services.embedding_model_save(name="llm:emb-16", backend="llm", dimensions=16, options={"model": "emb"})
    # Written directly, so no worker left running by another test embeds it meanwhile.
    entry = MemoryEntry.objects.create(
        agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "x"}, text="x", occurred_at=timezone.now()
    )
    # The upstream answers 500: transient, the task retries.
    with pytest.raises(TransientEmbeddingError):
        services.memory_embed_entries(entry_ids=[entry.id], spec=model_spec("llm:emb-down"))
    entry.refresh_from_db()
    assert entry.embedding_status == EmbeddingStatus.PENDING
    # Vectors of the wrong size: permanent, the entry fails with the reason.
    assert services.memory_embed_entries(entry_ids=[entry.id], spec=model_spec("llm:emb-16")) == {"embedded": 0, "failed": 1}
    entry.refresh_from_db()
    assert entry.embedding_status == EmbeddingStatus.FAILED and "16" in entry.embedding_error


def test_the_embedding_task_gives_up_after_its_retries(llm_registry):
    from apps.memory import tasks

    services.embedding_model_save(name="llm:emb-down", backend="llm", dimensions=8, is_active=True)
    try:
        entry = MemoryEntry.objects.create(
            agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "x"}, text="x", occurred_at=timezone.now()
        )
        # Run as the last retry would (the worker's backoff makes the real sequence slow).
        result = tasks.embed_entries.apply(args=[[entry.id]], retries=tasks.EMBED_MAX_RETRIES).get()
        assert result == {"embedded": 0, "failed": 1}
        entry.refresh_from_db()
        assert entry.embedding_status == EmbeddingStatus.FAILED and "gave up" in entry.embedding_error
    finally:
        services.embedding_model_activate(name="hash")


def test_a_multilingual_model_served_through_the_proxy(api, headers, llm_registry, fake_llm):
    """The dense side in any language: an OpenAI-compatible /embeddings upstream behind the
    LLM proxy, with multilingual-e5's instructions put before documents and queries."""
    import httpx

    services.embedding_model_save(
        name="llm:multilingual-e5",
        backend="llm",
        dimensions=8,
        is_active=True,
        options={"query_prefix": "query: ", "document_prefix": "passage: "},
    )
    try:
        text = "Зустріч спільноти в Києві 18 квітня"
        # Written directly, so no worker left running by another test embeds it meanwhile.
        entry_id = MemoryEntry.objects.create(
            agent_id=AGENT,
            microdao_id=DAO,
            kind="kb",
            content={"text": text},
            text=text,
            occurred_at=timezone.now(),
            **store._language_fields(text, None),
        ).id
        assert services.memory_embed_entries(entry_ids=[entry_id]) == {"embedded": 1, "failed": 0}
        last = httpx.get(f"{fake_llm}/_stats").json()["last"]
        assert last["body"]["model"] == "intfloat/multilingual-e5-small"
        assert last["body"]["input"] == ["passage: Зустріч спільноти в Києві 18 квітня"]
        entry = MemoryEntry.objects.get(id=entry_id)
        assert entry.embedding_model == "llm:multilingual-e5" and len(entry.embedding) == 8 and entry.lang == "uk"
        hits = api.post(
            "/internal/agent-memory/query", headers=headers, json={"agent_id": AGENT, "query": "коли зустріч у Києві?"}
        ).json()["items"]
        assert hits[0]["id"] == entry_id
        assert httpx.get(f"{fake_llm}/_stats").json()["last"]["body"]["input"] == ["query: коли зустріч у Києві?"]
    finally:
        services.embedding_model_activate(name="hash")


def test_a_query_embeds_through_the_proxy_beside_its_sql(llm_registry):
    # A proxy model is slow (a call over the network): the query's embedding runs on a pool
    # thread while the lexical SQL runs, and its vector still ranks the dense side.
    services.embedding_model_save(name="llm:emb", backend="llm", dimensions=8)
    services.embedding_model_save(name="llm:emb-down", backend="llm", dimensions=8)
    texts = ["the harvest festival moved to Friday", "budget review for the DAO treasury", "new logo drafts are ready"]
    # Written directly, as a store writes them but without queueing their embedding: a worker
    # left running by another test would embed them again with the active model meanwhile.
    ids = [
        MemoryEntry.objects.create(
            agent_id=AGENT,
            microdao_id=DAO,
            kind="kb",
            content={"text": t},
            text=t,
            occurred_at=timezone.now(),
            **store._language_fields(t, None),
        ).id
        for t in texts
    ]
    assert services.memory_embed_entries(entry_ids=ids, spec=model_spec("llm:emb")) == {"embedded": 3, "failed": 0}

    def dense_side(model: str) -> list[search.MemoryHit]:
        return search._hybrid(
            agent_id=AGENT,
            microdao_id=None,
            channel_id=None,
            query=texts[1],
            limit=3,
            kinds=None,
            since=None,
            until=None,
            model=model,
            neighbour_weight=0.0,
            sides=("dense",),
        )

    dense = dense_side("llm:emb")
    assert dense[0].id == ids[1] and dense[0].score == 1.0
    # The entry's own words: both sides rank it first (a two-word query left the fake vectors'
    # order to chance, and a tie between the sides to the random ids).
    hybrid = search.memory_query(agent_id=AGENT, query=texts[1], model="llm:emb", neighbour_weight=0.0)
    assert hybrid[0].id == ids[1]

    # The embedding upstream fails: the query still answers, by text alone.
    down = search.memory_query(agent_id=AGENT, query="treasury budget", model="llm:emb-down")
    assert [hit.id for hit in down] == [ids[1]]
    assert dense_side("llm:emb-down") == []


def test_the_embedding_task_retries_a_transient_error_then_gives_up(llm_registry):
    """From the first attempt: Celery's autoretry runs it again on each transient error (at
    once, as an eager task), and the last attempt marks the entries failed."""
    from apps.memory import tasks

    services.embedding_model_save(name="llm:emb-down", backend="llm", dimensions=8, is_active=True)
    try:
        entry = MemoryEntry.objects.create(
            agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "x"}, text="x", occurred_at=timezone.now()
        )
        tasks.embed_entries.apply(args=[[entry.id]])
        entry.refresh_from_db()
        assert entry.embedding_status == EmbeddingStatus.FAILED
        assert f"gave up after {tasks.EMBED_MAX_RETRIES} retries" in entry.embedding_error
    finally:
        services.embedding_model_activate(name="hash")
