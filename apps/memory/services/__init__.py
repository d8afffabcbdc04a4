"""Writes of apps.memory. The edges (the API, MCP tools, admin, tasks, commands) and the other
apps import from here only.

One module per concern: `store` (an entry's checks and storing one or many), `update` (a new
version of an entry, the old one kept in its history), `forget` (deleting entries with their
history), `embedding` (queueing and embedding entries, failures and requeues),
`embedding_models` (which models exist and which one is active), `jobs` (how a job's row ends),
`reembed` (moving every entry onto a new model), `summaries` (the summary jobs), `transcripts`
(session transcripts), and `threads` (sync services called from async code).
"""

from apps.memory.services.embedding import (
    memory_embed_entries,
    memory_mark_failed,
    memory_requeue_pending,
    memory_retry_failed,
)
from apps.memory.services.embedding_models import (
    embedding_model_activate,
    embedding_model_delete,
    embedding_model_save,
    embedding_models_ensure_builtin,
)
from apps.memory.services.forget import memory_delete, memory_forget
from apps.memory.services.jobs import memory_job_fail
from apps.memory.services.reembed import reembed_run, reembed_start
from apps.memory.services.store import amemory_store, amemory_store_bulk, memory_store, memory_store_bulk
from apps.memory.services.summaries import SummaryTransientError, summary_enqueue, summary_run
from apps.memory.services.threads import closing_connection
from apps.memory.services.transcripts import (
    session_id_clean,
    transcript_append,
    transcript_delete,
    transcript_parse_jsonl,
    transcript_put,
)
from apps.memory.services.update import amemory_update, memory_update

__all__ = [
    "SummaryTransientError",
    "amemory_store",
    "amemory_store_bulk",
    "amemory_update",
    "closing_connection",
    "embedding_model_activate",
    "embedding_model_delete",
    "embedding_model_save",
    "embedding_models_ensure_builtin",
    "memory_delete",
    "memory_embed_entries",
    "memory_forget",
    "memory_job_fail",
    "memory_mark_failed",
    "memory_requeue_pending",
    "memory_retry_failed",
    "memory_store",
    "memory_store_bulk",
    "memory_update",
    "reembed_run",
    "reembed_start",
    "session_id_clean",
    "summary_enqueue",
    "summary_run",
    "transcript_append",
    "transcript_delete",
    "transcript_parse_jsonl",
    "transcript_put",
]
