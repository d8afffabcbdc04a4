"""Session transcripts: checking a session's id and its entries (bookkeeping stripped), and
replacing, appending to and deleting a session's transcript under its version."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction

from apps.memory.models import Transcript
from apps.memory.services.store import json_size
from daarion.infra.errors import Conflict, PayloadTooLarge, PreconditionFailed, ValidationFailed
from daarion.infra.storable import json_problem, text_problem

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Entries that record the tool's own bookkeeping, not the conversation.
BOOKKEEPING_TYPES = frozenset({"progress", "file-history-snapshot", "snapshot", "queue-operation", "summary", "pr-link"})
TRANSCRIPT_MAX_ENTRIES = settings.MEMORY_TRANSCRIPT_MAX_ENTRIES
TRANSCRIPT_MAX_BYTES = settings.MEMORY_TRANSCRIPT_MAX_BYTES
TRANSCRIPT_MAX_ENTRY_BYTES = settings.MEMORY_TRANSCRIPT_MAX_ENTRY_BYTES


def session_id_clean(session_id: str) -> str:
    """Only a plain token may name a session: no path separators, no `..`, no control bytes."""
    if not isinstance(session_id, str) or not SESSION_ID_RE.match(session_id) or ".." in session_id:
        raise ValidationFailed.on_fields(
            {
                "session_id": "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', not starting with a symbol and without '..'",
            }
        )
    return session_id


def transcript_parse_jsonl(raw: bytes | str) -> list[dict]:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    entries: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationFailed.on_fields({f"line {number}": f"not valid JSON: {exc.msg}"}) from exc
        if not isinstance(value, dict):
            raise ValidationFailed.on_fields({f"line {number}": "must be a JSON object"})
        entries.append(value)
    return entries


def transcript_clean(entries: Sequence[dict]) -> tuple[list[dict], int]:
    """Validates entries, strips bookkeeping and re-parents their children to the nearest
    kept ancestor. Returns (kept entries, number stripped).
    """
    if len(entries) > TRANSCRIPT_MAX_ENTRIES:
        raise PayloadTooLarge(f"a transcript holds at most {TRANSCRIPT_MAX_ENTRIES} entries")
    parents: dict[str, str | None] = {}
    stripped_ids: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValidationFailed.on_fields({f"entries.{i}": "must be a JSON object"})
        kind = entry.get("type")
        if not isinstance(kind, str) or not kind:
            raise ValidationFailed.on_fields({f"entries.{i}.type": "must be a non-empty string"})
        uid = entry.get("uuid")
        if uid is not None:
            if not isinstance(uid, str) or not uid:
                raise ValidationFailed.on_fields({f"entries.{i}.uuid": "must be a non-empty string"})
            if uid in parents:
                raise ValidationFailed.on_fields({f"entries.{i}.uuid": f"repeats an earlier entry's uuid {uid!r}"})
            parent = entry.get("parentUuid")
            if parent is not None and not isinstance(parent, str):
                raise ValidationFailed.on_fields({f"entries.{i}.parentUuid": "must be a string or null"})
            parents[uid] = parent
            if kind in BOOKKEEPING_TYPES:
                stripped_ids.add(uid)
        found = json_problem(entry, f"entries.{i}")
        if found:
            raise ValidationFailed.on_fields(dict([found]))
        if json_size(entry) > TRANSCRIPT_MAX_ENTRY_BYTES:
            raise PayloadTooLarge(f"entries.{i} is over {TRANSCRIPT_MAX_ENTRY_BYTES} bytes")

    def kept_ancestor(parent: str | None) -> str | None:
        seen: set[str] = set()
        while parent is not None and parent in stripped_ids:
            if parent in seen:  # a cycle of bookkeeping entries: cut it
                return None
            seen.add(parent)
            parent = parents.get(parent)
        return parent

    kept: list[dict] = []
    for entry in entries:
        if entry["type"] in BOOKKEEPING_TYPES:
            continue
        parent = entry.get("parentUuid")
        if parent is not None and parent in stripped_ids:
            entry = {**entry, "parentUuid": kept_ancestor(parent)}
        kept.append(entry)
    types = {entry["type"] for entry in kept}
    missing = [t for t in ("user", "assistant") if t not in types]
    if missing:
        raise ValidationFailed.on_fields(
            {"entries": f"a transcript needs at least one user and one assistant entry (missing: {', '.join(missing)})"}
        )
    if json_size(kept) > TRANSCRIPT_MAX_BYTES:
        raise PayloadTooLarge(f"a transcript is at most {TRANSCRIPT_MAX_BYTES} bytes")
    return kept, len(entries) - len(kept)


def transcript_put(
    *, session_id: str, agent_id: str, entries: Sequence[dict], if_match: int | None = None
) -> tuple[Transcript, bool, int]:
    """Replaces a session's transcript. With `if_match` the stored version must equal it
    (412 otherwise); without it, a transcript shorter than the stored one is refused (409),
    so a slow writer never overwrites a newer turn. Returns (transcript, created, stripped).
    """
    session_id = session_id_clean(session_id)
    if not isinstance(agent_id, str) or not agent_id.strip():
        raise ValidationFailed.on_fields({"agent_id": "must be a non-empty string"})
    if problem := text_problem(agent_id):
        raise ValidationFailed.on_fields({"agent_id": problem})
    kept, stripped = transcript_clean(entries)
    with transaction.atomic():
        current = Transcript.objects.select_for_update().filter(session_id=session_id).first()
        if current is None:
            if if_match not in (None, 0):
                raise PreconditionFailed(f"transcript {session_id!r} does not exist (version 0)", details={"version": 0})
            transcript = Transcript.objects.create(
                session_id=session_id,
                agent_id=agent_id,
                version=1,
                entries=kept,
                entry_count=len(kept),
                size_bytes=json_size(kept),
            )
            return transcript, True, stripped
        if current.agent_id != agent_id:
            raise Conflict(f"session {session_id!r} belongs to another agent", type="session_agent_mismatch")
        if if_match is not None and if_match != current.version:
            raise PreconditionFailed(
                f"transcript {session_id!r} is at version {current.version}, not {if_match}",
                details={"version": current.version},
            )
        if if_match is None and len(kept) < current.entry_count:
            raise Conflict(
                f"the upload has {len(kept)} entries, fewer than the stored {current.entry_count}; send If-Match to replace it",
                type="transcript_shorter",
                details={"version": current.version, "entry_count": current.entry_count},
            )
        _transcript_replace(current, kept)
        return current, False, stripped


def transcript_append(*, session_id: str, agent_id: str, entries: list[dict]) -> Transcript:
    """Appends entries to a session's transcript (creating it); the whole is validated."""
    session_id = session_id_clean(session_id)
    with transaction.atomic():
        current = Transcript.objects.select_for_update().filter(session_id=session_id).first()
        if current is None:
            transcript, _, _ = transcript_put(session_id=session_id, agent_id=agent_id, entries=entries)
            return transcript
        if current.agent_id != agent_id:
            raise Conflict(f"session {session_id!r} belongs to another agent", type="session_agent_mismatch")
        kept, _ = transcript_clean([*current.entries, *entries])
        _transcript_replace(current, kept)
        return current


def _transcript_replace(transcript: Transcript, kept: list[dict]) -> None:
    """Stores checked entries as the transcript's next version (the caller holds its row lock)."""
    transcript.entries = kept
    transcript.entry_count = len(kept)
    transcript.size_bytes = json_size(kept)
    transcript.version += 1
    transcript.save()


def transcript_delete(*, session_id: str) -> None:
    Transcript.objects.filter(session_id=session_id_clean(session_id)).delete()
