"""Celery tasks of the agents app: execute a run, sweep runs whose executor died.

Both go to the `agents` queue, whose workers run a thread pool: each task thread hands its
coroutine to the process's runs loop (runs/loop.py).
"""

from __future__ import annotations

import os
import socket

from daarion.celery import Queue, app


@app.task(name="agents.execute_run", queue=Queue.AGENTS, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run(run_id: str) -> str:
    # A redelivered or duplicated message is harmless: only a queued run can begin, under
    # the run's lease (runs/executor.py).
    from apps.agents.runs.executor import execute_run as execute
    from apps.agents.runs.loop import run_in_loop

    from daarion.observability.tracing import carry

    # carry: the run continues the trace of the request that queued it (the task's headers).
    return run_in_loop(carry(execute(run_id, holder=f"{socket.gethostname()}:{os.getpid()}")))


@app.task(name="agents.sweep_runs", queue=Queue.AGENTS, ignore_result=True)
def sweep_runs() -> dict[str, int]:
    from apps.agents.runs.loop import run_in_loop
    from apps.agents.runs.services import aruns_sweep

    return run_in_loop(aruns_sweep())
