"""The memory admin: browser with the hybrid search, status counts, actions, transcript viewer."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.memory import services
from apps.memory.choices import EmbeddingStatus
from apps.memory.models import EmbeddingModel, MemoryEntry

from .conftest import AGENT

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789")
    client.force_login(user)
    return client


def test_browser_search_runs_the_hybrid_query(staff, remember):
    hit = remember("the treasury approved the hackathon budget")
    other = remember("hiking in the mountains")
    services.memory_embed_entries(entry_ids=[hit.id, other.id])
    response = staff.get(reverse("admin:memory_memoryentry_changelist"), {"q": "treasury budget"})
    assert response.status_code == 200
    body = response.content.decode()
    assert hit.id in body
    assert other.id not in body or body.index(hit.id) < body.index(other.id)
    assert "Embedding status per model" in body
    scoped = staff.get(reverse("admin:memory_memoryentry_changelist"), {"q": "treasury", "agent_id__exact": "agent:pm"})
    assert hit.id not in scoped.content.decode()


def test_entry_page_and_filters_render(staff, remember):
    entry = remember("x")
    services.memory_embed_entries(entry_ids=[entry.id])
    assert staff.get(reverse("admin:memory_memoryentry_change", args=[entry.id])).status_code == 200
    assert staff.get(reverse("admin:memory_memoryentry_changelist"), {"embedding_status__exact": "ready"}).status_code == 200
    models_page = staff.get(reverse("admin:memory_embeddingmodel_changelist"))
    assert models_page.status_code == 200 and b"hash" in models_page.content


def test_reembed_and_delete_actions(staff, remember):
    entry = remember("to be re-embedded")
    MemoryEntry.objects.filter(id=entry.id).update(embedding_status=EmbeddingStatus.FAILED, embedding_error="boom")
    url = reverse("admin:memory_memoryentry_changelist")
    staff.post(url, {"action": "reembed_selected", "_selected_action": [entry.id]})
    entry.refresh_from_db()
    assert entry.embedding_status == EmbeddingStatus.PENDING and entry.embedding_error == ""
    staff.post(url, {"action": "delete_selected_memories", "_selected_action": [entry.id]})
    assert not MemoryEntry.objects.filter(id=entry.id).exists()


def test_adding_a_model_in_admin_goes_through_the_service(staff):
    from django.db import connection

    from apps.memory.vector_index import index_name_for

    response = staff.post(
        reverse("admin:memory_embeddingmodel_add"), {"name": "llm:bge-m3", "backend": "llm", "dimensions": 1024, "options": "{}"}
    )
    assert response.status_code == 302
    assert EmbeddingModel.objects.filter(name="llm:bge-m3", dimensions=1024).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [index_name_for("llm:bge-m3")])
        assert cursor.fetchone()


def test_transcript_viewer_shows_the_conversation(staff):
    services.transcript_put(
        session_id="sess-9",
        agent_id=AGENT,
        entries=[
            {"type": "user", "uuid": "u1", "message": {"role": "user", "content": "<b>hello</b>"}},
            {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "message": "hi there"},
        ],
    )
    body = staff.get(reverse("admin:memory_transcript_change", args=["sess-9"])).content.decode()
    assert "hi there" in body and "&lt;b&gt;hello&lt;/b&gt;" in body
