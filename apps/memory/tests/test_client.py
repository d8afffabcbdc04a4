"""daarion_client's memory calls against the real server, sync and async: list and iterate,
get, update with history, filtered query, delete, and errors with the service's envelope."""

from __future__ import annotations

import asyncio

import pytest

from apps.memory import services
from daarion_client import AsyncDaarionClient, DaarionAPIError, DaarionClient

AGENT = "agent:sofia"
DAO = "microdao:7"


@pytest.fixture
def token(make_token, transactional_db) -> str:
    return make_token(scopes=["memory"])


def test_memory_calls_through_the_sync_client(asgi_server, token):
    with DaarionClient(asgi_server.url, token) as client:
        ids = [
            client.memory_store(
                agent_id=AGENT,
                microdao_id=DAO,
                kind="kb",
                content={"text": f"note {i} about the treasury"},
                meta={"source": "matrix", "n": i},
            )["id"]
            for i in range(5)
        ]
        page = client.memory_list(agent_id=AGENT, limit=2, meta={"source": "matrix"})
        assert len(page["items"]) == 2 and page["next_cursor"]
        assert sorted(e["id"] for e in client.memory_iter(agent_id=AGENT, limit=2)) == sorted(ids)
        assert [e["id"] for e in client.memory_iter(agent_id=AGENT, meta={"n": 3})] == [ids[3]]
        updated = client.memory_update(ids[0], content={"text": "the treasury holds 5000 DAAR"}, expected_version=1)
        assert updated["version"] == 2 and client.memory_get(ids[0])["text"] == "the treasury holds 5000 DAAR"
        with pytest.raises(DaarionAPIError) as info:
            client.memory_update(ids[0], meta={}, expected_version=1)
        assert (info.value.status, info.value.type) == (409, "version_conflict")
        assert [v["version"] for v in client.memory_history(ids[0])["items"]] == [1, 2]
        # Embedded here, so the ranking does not depend on a worker left running by another test.
        services.memory_embed_entries(entry_ids=ids)
        hits = client.memory_query(
            agent_id=AGENT, query="how much DAAR does the treasury hold", meta={"source": "matrix"}, min_score=0.2
        )
        assert hits["items"][0]["id"] == ids[0] and all(h["score"] >= 0.2 for h in hits["items"])
        assert client.memory_delete(ids[0]) == {"ok": True, "id": ids[0]}
        with pytest.raises(DaarionAPIError) as info:
            client.memory_list(agent_id=AGENT, cursor="garbage")
        assert (info.value.status, info.value.type) == (422, "validation_error")


def test_memory_calls_through_the_async_client(asgi_server, token):
    async def run():
        async with AsyncDaarionClient(asgi_server.url, token) as client:
            stored = await client.memory_store(
                agent_id=AGENT, microdao_id=DAO, kind="kb", content={"text": "Зустріч перенесли на четвер"}
            )
            entry = await client.memory_get(stored["id"])
            assert entry["lang"] == "uk"
            listed = [e["id"] async for e in client.memory_iter(agent_id=AGENT, kinds=["kb"])]
            assert listed == [stored["id"]]
            await client.memory_update(stored["id"], meta={"checked": True})
            assert (await client.memory_history(stored["id"]))["version"] == 2
            await asyncio.to_thread(services.closing_connection(services.memory_embed_entries), entry_ids=[stored["id"]])
            hits = await client.memory_query(agent_id=AGENT, query="коли зустріч?")
            assert hits["items"][0]["id"] == stored["id"]

    asyncio.run(run())
