"""manage.py reembed [--model NAME] [--inline]: moves every memory onto an embedding model.

Activates the model (new writes and queries use it at once), then re-embeds the existing
entries in the background on the `embeddings` queue, drawing a progress bar until done.
Queries keep working throughout: entries not yet moved are still found by text.
"""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.memory import selectors, services
from apps.memory.choices import JobStatus
from apps.memory.embeddings import EmbeddingError
from daarion.infra.errors import DaarionError


def _bar(done: int, total: int, width: int = 40) -> str:
    fraction = 1.0 if total == 0 else min(1.0, done / total)
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {done}/{total}"


class Command(BaseCommand):
    help = "Re-embeds all memories with an embedding model (default: the active one), in the background."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="embedding model name (hash, local, llm:<model>); becomes the active model")
        parser.add_argument("--inline", action="store_true", help="embed in this process instead of the Celery worker")
        parser.add_argument("--no-wait", action="store_true", help="start the background job and return at once")
        parser.add_argument("--timeout", type=float, default=24 * 3600, help="stop watching after this many seconds")

    def handle(self, *args, model: str | None, inline: bool, no_wait: bool, timeout: float, **opts) -> None:
        name = model or selectors.active_model_spec().name
        try:
            job = services.reembed_start(model_name=name, enqueue=not inline)
        except DaarionError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(f"reembed: job {job.id} moving memories onto {name}")
        if no_wait:
            self.stdout.write(job.id)
            return
        deadline = time.monotonic() + timeout
        while True:
            if inline:
                try:
                    job = services.reembed_run(job_id=job.id, budget_batches=1)
                except EmbeddingError as exc:
                    raise CommandError(f"embedding failed: {exc}") from exc
            else:
                time.sleep(0.5)
                job = selectors.memory_job_get(job_id=job.id)
            result = job.result or {}
            if job.status == JobStatus.SUCCEEDED:
                # Entries embedded meanwhile by the normal pipeline count as done too.
                self._draw(result.get("total", 0), result.get("total", 0))
                break
            self._draw(result.get("done", 0), result.get("total", 0))
            if job.status == JobStatus.FAILED:
                break
            if time.monotonic() > deadline:
                sys.stderr.write("\n")
                raise CommandError(f"still running after {timeout:.0f}s; job {job.id} goes on in the background")
        sys.stderr.write("\n")
        if job.status == JobStatus.FAILED:
            raise CommandError(f"job {job.id} failed: {job.error}")
        self.stdout.write(f"re-embedded {result.get('done', 0)} memories with {name} ({result.get('failed', 0)} failed)")

    def _draw(self, done: int, total: int) -> None:
        sys.stderr.write("\r" + _bar(done, total))
        sys.stderr.flush()
