"""Ninja router of the memory orchestrator: /internal/agent-memory.

Thin: parse, check the caller may act for the agent, call a service or selector, shape the
answer. A token bound to agents never reads or writes another agent's memory; an entry,
job or transcript of another agent answers 404, so its existence does not leak either.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from ninja import Router

from apps.memory import schemas, search, selectors, services
from apps.memory.choices import JobStatus, MemoryKind
from apps.memory.services import closing_connection
from apps.access.auth import ServiceTokenAuth, principal_of
from daarion.infra.errors import BadRequest, NotFound, ValidationFailed
from daarion.infra.storable import text_problem, to_utc

router = Router(tags=["memory"], auth=ServiceTokenAuth("memory"))


def _run(fn):
    return sync_to_async(closing_connection(fn), thread_sensitive=False)


def _hidden(kind: str, ident: str) -> NotFound:
    return NotFound(f"{kind} {ident!r} not found", type=f"{kind.replace(' ', '_')}_not_found")


async def _owned(request: HttpRequest, kind: str, ident: str, get: Callable[..., Any], **lookup: Any) -> Any:
    """The row `get(**lookup)` finds, if the caller may act for its agent; else 404, as if it
    did not exist, so a token cannot learn what other agents hold."""
    try:
        row = await _run(get)(**lookup)
    except NotFound:
        raise _hidden(kind, ident) from None
    if not principal_of(request).may_act_for(row.agent_id):
        raise _hidden(kind, ident)
    return row


def _entry_out(entry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "agent_id": entry.agent_id,
        "microdao_id": entry.microdao_id,
        "channel_id": entry.channel_id,
        "kind": entry.kind,
        "content": entry.content,
        "text": entry.text,
        "meta": entry.meta,
        "occurred_at": entry.occurred_at,
        "created_at": entry.created_at,
        "embedding_model": entry.embedding_model,
        "embedding_status": entry.embedding_status,
        "embedding_error": entry.embedding_error,
        "idempotency_key": entry.idempotency_key,
        "lang": entry.lang,
        "version": entry.version,
        "updated_at": entry.updated_at,
    }


def _acting(request: HttpRequest, named: str | None, source: str = "body.agent_id") -> str:
    """The agent the call acts for: the one rule of every door (Principal.acting_agent)."""
    return principal_of(request).acting_agent(named, source=source, required=True)


@router.post("/store", response={200: schemas.StoreOut, 201: schemas.StoreOut})
async def store(request: HttpRequest, payload: schemas.StoreIn):
    payload.agent_id = _acting(request, payload.agent_id)
    data = payload.dict()
    data["kind"] = str(payload.kind.value)
    data["idempotency_key"] = payload.idempotency_key or request.headers.get("Idempotency-Key") or None
    entry, created = await services.amemory_store(**data)
    return (201 if created else 200), {"ok": True, "id": entry.id, "created": created}


@router.post("/store/bulk", response={200: schemas.BulkStoreOut, 201: schemas.BulkStoreOut})
async def store_bulk(request: HttpRequest, payload: schemas.BulkStoreIn):
    for index, item in enumerate(payload.items):
        item.agent_id = _acting(request, item.agent_id, f"body.items[{index}].agent_id")
    items = [{**item.dict(), "kind": str(item.kind.value)} for item in payload.items]
    results = await services.amemory_store_bulk(items=items)
    created = sum(1 for _, was_created in results if was_created)
    return (201 if created else 200), {"ok": True, "ids": [entry.id for entry, _ in results], "created": created}


@router.post("/query", response=schemas.QueryOut)
async def query(request: HttpRequest, payload: schemas.QueryIn):
    payload.agent_id = _acting(request, payload.agent_id)
    hits = await search.amemory_query(
        agent_id=payload.agent_id,
        microdao_id=payload.microdao_id,
        channel_id=payload.channel_id,
        query=payload.query,
        limit=payload.limit,
        kinds=[str(k.value) for k in payload.kinds] if payload.kinds else None,
        since=payload.since,
        until=payload.until,
        meta=payload.meta,
        min_score=payload.min_score,
        lang=payload.lang,
    )
    return {"items": [{"id": h.id, "kind": h.kind, "score": h.score, "content": h.content, "meta": h.meta} for h in hits]}


@router.post("/forget", response=schemas.ForgetOut)
async def forget(request: HttpRequest, payload: schemas.ForgetIn):
    """Deletes every memory of an agent, or of one channel / microDAO / kinds of it."""
    payload.agent_id = _acting(request, payload.agent_id)
    deleted = await _run(services.memory_forget)(
        agent_id=payload.agent_id,
        channel_id=payload.channel_id,
        microdao_id=payload.microdao_id,
        kinds=[str(k.value) for k in payload.kinds] if payload.kinds else None,
    )
    return {"ok": True, "deleted": deleted}


@router.post("/summarize", response={200: schemas.JobOut, 202: schemas.JobOut})
async def summarize(request: HttpRequest, payload: schemas.SummarizeIn):
    payload.agent_id = _acting(request, payload.agent_id)
    job = await _run(services.summary_enqueue)(
        agent_id=payload.agent_id,
        microdao_id=payload.microdao_id,
        channel_id=payload.channel_id,
        since=payload.since,
        until=payload.until,
        model=payload.model,
        max_entries=payload.max_entries,
    )
    if payload.wait:
        deadline = time.monotonic() + payload.timeout
        while job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            job = await _run(selectors.memory_job_get)(job_id=job.id)
    done = job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)
    return (200 if done else 202), _job_out(job)


def _job_out(job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "agent_id": job.agent_id,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


@router.get("/jobs/{job_id}", response=schemas.JobOut)
async def job_get(request: HttpRequest, job_id: str):
    try:
        job = await _run(selectors.memory_job_get)(job_id=job_id)
    except NotFound:
        raise _hidden("job", job_id) from None
    if job.agent_id and not principal_of(request).may_act_for(job.agent_id):
        raise _hidden("job", job_id)
    return _job_out(job)


# --- transcripts ---------------------------------------------------------------------------

_IF_MATCH = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')


def _if_match(request: HttpRequest) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    match = _IF_MATCH.match(raw.strip())
    if not match:
        raise BadRequest('If-Match must be the version, e.g. "3"', type="bad_if_match")
    return int(match.group(1))


def _transcript_out(transcript, *, stripped: int | None = None, with_entries: bool = False) -> dict[str, Any]:
    return {
        "session_id": transcript.session_id,
        "agent_id": transcript.agent_id,
        "version": transcript.version,
        "entry_count": transcript.entry_count,
        "size_bytes": transcript.size_bytes,
        "stripped": stripped,
        "entries": transcript.entries if with_entries else None,
        "updated_at": transcript.updated_at,
    }


def _parse_transcript_body(request: HttpRequest) -> tuple[str | None, list]:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(request.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}", type="bad_json") from exc
        if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
            raise ValidationFailed(
                'body must be {"agent_id": ..., "entries": [...]}',
                details=[{"path": "body.entries", "message": "must be a list"}],
            )
        agent_id = body.get("agent_id")
        return (agent_id if isinstance(agent_id, str) else None), body["entries"]
    if content_type in ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain", ""):
        try:
            return request.GET.get("agent_id"), services.transcript_parse_jsonl(request.body)
        except UnicodeDecodeError as exc:
            raise BadRequest("body is not UTF-8", type="bad_encoding") from exc
    raise BadRequest(
        f"unsupported Content-Type {content_type!r}; send application/x-ndjson or application/json",
        type="unsupported_media_type",
        status=415,
    )


@router.put("/transcripts/{session_id}", response={200: schemas.TranscriptOut, 201: schemas.TranscriptOut})
async def transcript_put(request: HttpRequest, session_id: str):
    """Body: JSONL (`?agent_id=` names the agent) or JSON `{"agent_id", "entries"}`.
    `If-Match: "<version>"` replaces that version only (412 otherwise); without it a shorter
    transcript than the stored one is refused (409).
    """
    services.session_id_clean(session_id)
    if_match = _if_match(request)
    named, entries = _parse_transcript_body(request)
    # JSONL names its agent in the query string, JSON in the body.
    agent_id = _acting(request, named or None, "agent_id")
    transcript, created, stripped = await _run(services.transcript_put)(
        session_id=session_id, agent_id=agent_id, entries=entries, if_match=if_match
    )
    return (201 if created else 200), _transcript_out(transcript, stripped=stripped)


async def _own_transcript(request: HttpRequest, session_id: str):
    services.session_id_clean(session_id)
    return await _owned(request, "transcript", session_id, selectors.transcript_get, session_id=session_id)


@router.get("/transcripts/{session_id}", response=schemas.TranscriptOut)
async def transcript_get(request: HttpRequest, session_id: str, format: str = "json"):
    """`?format=jsonl` answers the transcript as JSONL; the ETag is its version."""
    transcript = await _own_transcript(request, session_id)
    if format == "jsonl":
        body = "\n".join(json.dumps(entry, ensure_ascii=False) for entry in transcript.entries) + "\n"
        response = HttpResponse(body, content_type="application/x-ndjson")
    elif format == "json":
        response = HttpResponse(
            schemas.TranscriptOut(**_transcript_out(transcript, with_entries=True)).model_dump_json(),
            content_type="application/json",
        )
    else:
        raise ValidationFailed("format must be json or jsonl", details=[{"path": "format", "message": "json or jsonl"}])
    response["ETag"] = f'"{transcript.version}"'
    return response


@router.delete("/transcripts/{session_id}", response=schemas.DeletedOut)
async def transcript_delete(request: HttpRequest, session_id: str):
    transcript = await _own_transcript(request, session_id)
    await _run(services.transcript_delete)(session_id=transcript.session_id)
    return {"ok": True, "id": transcript.session_id}


# --- listing (mem0's get_all) --------------------------------------------------------------

_LIST_KEYS = frozenset({"agent_id", "microdao_id", "channel_id", "kind", "since", "until", "limit", "cursor"})


def _one(request: HttpRequest, key: str) -> str | None:
    values = request.GET.getlist(key)
    if len(values) > 1:
        raise ValidationFailed.on_fields({f"query.{key}": "give it once"})
    if values and (problem := text_problem(values[0])):
        raise ValidationFailed.on_fields({f"query.{key}": problem})
    return values[0] if values else None


def _when(request: HttpRequest, key: str) -> datetime | None:
    raw = _one(request, key)
    if raw is None:
        return None
    try:
        return to_utc(datetime.fromisoformat(raw.replace(" ", "+")))
    except ValueError:
        raise ValidationFailed.on_fields({f"query.{key}": "must be an ISO 8601 datetime, e.g. 2026-01-31T12:00:00Z"}) from None


def _list_params(request: HttpRequest) -> dict[str, Any]:
    """The list's query string, strictly: an unknown key is a 422, not a filter ignored."""
    meta: dict[str, str] = {}
    for key in request.GET:
        if key.startswith("meta.") and len(key) > 5:
            meta[key[5:]] = _one(request, key) or ""
        elif key not in _LIST_KEYS:
            known = ", ".join(sorted(_LIST_KEYS | {"meta.<key>"}))
            raise ValidationFailed.on_fields({f"query.{key}": f"is not a filter of this list; use {known}"})
    agent_id = _acting(request, _one(request, "agent_id") or None, "query.agent_id")
    kinds: list[str] = []
    for value in request.GET.getlist("kind"):
        for kind in filter(None, (part.strip() for part in value.split(","))):
            if kind not in MemoryKind.values:
                raise ValidationFailed.on_fields({"query.kind": f"must be one of {', '.join(MemoryKind.values)}"})
            kinds.append(kind)
    raw_limit = _one(request, "limit")
    try:
        limit = int(raw_limit) if raw_limit is not None else 50
    except ValueError:
        raise ValidationFailed.on_fields({"query.limit": "must be an integer"}) from None
    return {
        "agent_id": agent_id,
        "microdao_id": _one(request, "microdao_id"),
        "channel_id": _one(request, "channel_id"),
        "kinds": kinds or None,
        "since": _when(request, "since"),
        "until": _when(request, "until"),
        "meta": search.meta_filter_clean(meta, "query.meta") if meta else None,
        "limit": limit,
        "cursor": _one(request, "cursor") or None,
    }


@router.get("/", response=schemas.ListOut)
async def entry_list(request: HttpRequest):
    """An agent's memories, newest first: `?agent_id=` (a token bound to one agent may leave
    it out), `kind` (repeat or comma
    list), `channel_id`, `microdao_id`, `since`, `until`, `meta.<key>=<value>`, `limit`
    (1-200, default 50) and `cursor` (the previous page's `next_cursor`)."""
    params = _list_params(request)
    try:
        entries, next_cursor = await _run(selectors.memory_list)(**params)
    except ValidationFailed as exc:
        # The selector names its arguments; the caller wrote them in the query string.
        for detail in exc.details or []:
            detail["path"] = "query." + detail["path"]
        raise
    return {"items": [_entry_out(entry) for entry in entries], "next_cursor": next_cursor}


# --- single entries (last: `/{entry_id}` would shadow the fixed paths above) -------------


async def _own_entry(request: HttpRequest, entry_id: str):
    return await _owned(request, "memory", entry_id, selectors.memory_entry_get, entry_id=entry_id)


@router.get("/{entry_id}", response=schemas.EntryOut)
async def entry_get(request: HttpRequest, entry_id: str):
    return _entry_out(await _own_entry(request, entry_id))


@router.patch("/{entry_id}", response=schemas.EntryOut)
async def entry_update(request: HttpRequest, entry_id: str, payload: schemas.UpdateIn):
    """Replaces content and/or meta; the previous version goes to the history and the entry
    is embedded again. `expected_version` (409) or `If-Match: "<version>"` (412) refuse an
    update made against an older version; without them updates are applied one at a time."""
    if_match = _if_match(request)
    entry = await _own_entry(request, entry_id)
    try:
        updated = await services.amemory_update(
            entry_id=entry.id,
            content=payload.content,
            meta=payload.meta,
            lang=payload.lang,
            expected_version=payload.expected_version,
            if_match=if_match,
        )
    except NotFound:
        raise _hidden("memory", entry_id) from None
    return _entry_out(updated)


@router.get("/{entry_id}/history", response=schemas.HistoryOut)
async def entry_history(request: HttpRequest, entry_id: str):
    """Every version of the entry, oldest first; the last is the current one."""
    entry = await _own_entry(request, entry_id)
    versions = await _run(selectors.memory_history)(entry=entry)
    items = [
        {
            "version": v.version,
            "content": v.content,
            "text": v.text,
            "meta": v.meta,
            "lang": v.lang,
            "valid_from": v.valid_from,
            "replaced_at": v.replaced_at,
            "current": False,
        }
        for v in versions
    ]
    items.append(
        {
            "version": entry.version,
            "content": entry.content,
            "text": entry.text,
            "meta": entry.meta,
            "lang": entry.lang,
            "valid_from": entry.updated_at or entry.created_at,
            "replaced_at": None,
            "current": True,
        }
    )
    return {"id": entry.id, "version": entry.version, "items": items}


@router.delete("/{entry_id}", response=schemas.DeletedOut)
async def entry_delete(request: HttpRequest, entry_id: str):
    entry = await _own_entry(request, entry_id)
    await _run(services.memory_delete)(entry=entry)
    return {"ok": True, "id": entry.id}
