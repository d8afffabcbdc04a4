"""Demo memories for Sofia-Prime (agent:sofia in microdao:7), idempotent by key."""

from __future__ import annotations

from typing import Any

from apps.memory.services import embedding_models_ensure_builtin, memory_store, reembed_start, transcript_put
from daarion.infra.errors import Conflict

AGENT = "agent:sofia"
DAO = "microdao:7"
MEMORIES: list[tuple[str, str | None, dict[str, Any]]] = [
    (
        "conversation",
        "general",
        {
            "user_message": "Which projects are active in microDAO 7?",
            "agent_reply": "Messenger, the DAGI router and the memory orchestrator.",
        },
    ),
    ("conversation", "general", {"user_message": "When is the weekly sync?", "agent_reply": "Thursdays at 10:00 Kyiv time."}),
    ("kb", None, {"text": "Roadmap Q3: LLM proxy, memory orchestrator and toolcore ship together as Phase 3."}),
    (
        "dao-event",
        None,
        {"event": "proposal.passed", "title": "Budget of 5000 DAAR for the hackathon", "votes_for": 41, "votes_against": 3},
    ),
    ("task", "general", {"text": "Prepare the Phase 3 demo for Sofia-Prime", "owner": "agent:pm", "due": "2026-12-01"}),
]


def _prefer_local_model() -> str | None:
    """`make run` gives semantic memory when requirements-local.txt is installed: switch the
    default `hash` model to `local` once, re-embedding in the background.
    """
    from apps.memory.embeddings.local import is_available
    from apps.memory.models import MemoryJob
    from apps.memory.selectors import active_model_name_now

    if not is_available() or active_model_name_now() != "hash":
        return None
    if MemoryJob.objects.filter(kind="reembed", params__model="local").exists():
        return None  # done before; an operator who went back to hash meant it
    job = reembed_start(model_name="local")
    return f"memory: activated the local embedding model (re-embed job {job.id})"


def seed() -> list[str]:
    embedding_models_ensure_builtin()
    lines = [line for line in [_prefer_local_model()] if line]
    created = 0
    for i, (kind, channel, content) in enumerate(MEMORIES):
        _, was_created = memory_store(
            agent_id=AGENT,
            microdao_id=DAO,
            channel_id=channel,
            kind=kind,
            content=content,
            meta={"source": "demo"},
            idempotency_key=f"demo-{i}",
        )
        created += was_created
    try:
        transcript_put(
            session_id="demo-session",
            agent_id=AGENT,
            entries=[
                {"type": "user", "uuid": "demo-u1", "parentUuid": None, "message": {"role": "user", "content": "Hi Sofia!"}},
                {
                    "type": "assistant",
                    "uuid": "demo-a1",
                    "parentUuid": "demo-u1",
                    "message": {"role": "assistant", "content": "Hi! How can I help microDAO 7 today?"},
                },
            ],
        )
    except Conflict:
        # The demo session grew since the last seed (someone talked to Sofia): keep it.
        transcript_note = "kept the longer demo transcript"
    else:
        transcript_note = "demo transcript written"
    return lines + [
        f"memory: {created} demo memories stored for {AGENT} ({len(MEMORIES) - created} already there); {transcript_note}"
    ]
