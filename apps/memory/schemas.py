"""Request and response models of /internal/agent-memory (the seed's shapes, plus extras)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import ConfigDict

from apps.memory.choices import MemoryKind
from daarion.infra.storable import StorableObject, StorableText, UtcDatetime

Kind = MemoryKind  # the kinds a caller may name

# The fields several requests share, declared once.
ActingAgentId = Annotated[
    StorableText | None,
    Field(
        min_length=1,
        max_length=128,
        description="the agent this call acts for; a token bound to one agent may leave it out",
    ),
]
MicroDaoId = Annotated[StorableText, Field(min_length=1, max_length=128)]
MicroDaoFilter = Annotated[StorableText | None, Field(max_length=128)]
ChannelId = Annotated[StorableText | None, Field(max_length=256)]
Lang = Annotated[str | None, Field(min_length=2, max_length=3, pattern=r"^[A-Za-z]{2,3}$")]


class StoreIn(Schema):
    agent_id: ActingAgentId = None
    microdao_id: MicroDaoId
    channel_id: ChannelId = None
    kind: MemoryKind
    content: StorableObject
    meta: StorableObject | None = None
    occurred_at: UtcDatetime | None = None
    idempotency_key: StorableText | None = Field(None, min_length=1, max_length=200)
    lang: Lang = Field(None, description="ISO 639-1; detected when absent")


class StoreOut(Schema):
    ok: bool = True
    id: str
    created: bool


class BulkStoreIn(Schema):
    items: list[StoreIn] = Field(..., min_length=1)


class BulkStoreOut(Schema):
    ok: bool = True
    ids: list[str]
    created: int


class QueryIn(Schema):
    agent_id: ActingAgentId = None
    microdao_id: MicroDaoFilter = None
    channel_id: ChannelId = None
    query: str = Field(..., min_length=1, max_length=2000)
    limit: int = Field(5, ge=1, description="capped at MEMORY_QUERY_MAX_LIMIT (50)")
    kinds: list[MemoryKind] | None = None
    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    meta: dict[str, Any] | None = Field(None, description="keep entries whose meta holds each key/value pair")
    min_score: float | None = Field(None, ge=0, le=1, description="drop hits scoring below this")
    lang: Lang = Field(None, description="the query's language; detected when absent")

    # A misspelt filter must not be ignored silently: it would widen the answer.
    model_config = ConfigDict(extra="forbid")


class HitOut(Schema):
    id: str
    kind: str
    score: float
    content: str
    meta: dict[str, Any]


class QueryOut(Schema):
    items: list[HitOut]


class EntryOut(Schema):
    id: str
    agent_id: str
    microdao_id: str
    channel_id: str | None
    kind: str
    content: dict[str, Any]
    text: str
    meta: dict[str, Any]
    occurred_at: datetime
    created_at: datetime
    embedding_model: str
    embedding_status: str
    embedding_error: str
    idempotency_key: str | None
    lang: str
    version: int
    updated_at: datetime | None


class ListOut(Schema):
    items: list[EntryOut]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")


class UpdateIn(Schema):
    content: StorableObject | None = None
    meta: StorableObject | None = None
    lang: Lang = None
    expected_version: int | None = Field(None, ge=1, description="409 version_conflict unless the entry is at this version")

    model_config = ConfigDict(extra="forbid")


class VersionOut(Schema):
    version: int
    content: dict[str, Any]
    text: str
    meta: dict[str, Any]
    lang: str
    valid_from: datetime
    replaced_at: datetime | None
    current: bool


class HistoryOut(Schema):
    id: str
    version: int
    items: list[VersionOut]


class ForgetIn(Schema):
    agent_id: ActingAgentId = None
    microdao_id: MicroDaoFilter = None
    channel_id: ChannelId = None
    kinds: list[MemoryKind] | None = None


class ForgetOut(Schema):
    ok: bool = True
    deleted: int


class DeletedOut(Schema):
    ok: bool = True
    id: str


class SummarizeIn(Schema):
    agent_id: ActingAgentId = None
    microdao_id: MicroDaoId
    channel_id: ChannelId = None
    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    model: StorableText | None = Field(None, max_length=120)
    max_entries: int = Field(100, ge=1, le=500)
    wait: bool = False
    timeout: float = Field(30.0, gt=0, le=120)


class JobOut(Schema):
    id: str
    kind: str
    status: str
    agent_id: str
    result: dict[str, Any] | None
    error: str
    created_at: datetime
    finished_at: datetime | None


class TranscriptIn(Schema):
    agent_id: ActingAgentId = None
    entries: list[StorableObject]


class TranscriptOut(Schema):
    session_id: str
    agent_id: str
    version: int
    entry_count: int
    size_bytes: int
    stripped: int | None = None
    entries: list[dict[str, Any]] | None = None
    updated_at: datetime
