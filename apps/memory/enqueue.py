"""Sending apps.memory's Celery tasks by name.

Services and summaries queue work through these functions instead of importing `tasks.py`,
which imports them: the imports run one way (tasks -> services, summaries), and the task
names and queues are written here once (tasks.py registers its tasks under these names).
"""

from __future__ import annotations

from daarion.celery import Queue, app

EMBED_ENTRIES = "memory.embed_entries"
REEMBED = "memory.reembed"
SUMMARIZE = "memory.summarize"

# ignore_result everywhere: nobody reads these results (jobs keep theirs on their rows), and
# asking for one makes the send subscribe to the result backend first, which retries for
# ~20 s while Redis is down.


def enqueue_embed_entries(entry_ids: list[str], *, retry: bool = True) -> None:
    """Queues one embedding batch; `retry=False` fails at once when the broker is down."""
    app.send_task(EMBED_ENTRIES, args=[entry_ids], queue=Queue.EMBEDDINGS, retry=retry, ignore_result=True)


def enqueue_reembed(job_id: str) -> None:
    app.send_task(REEMBED, args=[job_id], queue=Queue.EMBEDDINGS, ignore_result=True)


def enqueue_summarize(job_id: str, *, retry: bool = True) -> None:
    app.send_task(SUMMARIZE, args=[job_id], queue=Queue.SUMMARIES, retry=retry, ignore_result=True)
