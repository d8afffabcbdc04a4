"""Runs against process faults, with real processes: a worker SIGKILLed mid-run leaves the
run `interrupted` with a closed stream once its lease runs out, and a redelivered task does
not run it again; two workers given the same run's task never both run it."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.agents.models import Run
from apps.agents.tasks import execute_run
from apps.agents.tests.conftest import wait_until
from apps.agents.tests.sse import assert_protocol, parse_sse
from apps.demo.models import Followup
from devtools.testing import ServerProcess, start_asgi_server, start_celery_beat, start_celery_worker

QUEUE = "agents-faults"
AGENT = "/internal/agents/agent:sofia"
FOLLOWUP_ARGS = {"microdao_id": "microdao:7", "title": "Exactly once"}
SLOW = "one two three four five six seven eight nine ten"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faults_env(server_env) -> dict[str, str]:
    # A short lease and a quick sweep, so a dead worker's run ends within seconds.
    return {
        **server_env,
        "DATABASE_POOL": "1",
        "DAARION_AGENTS_RUN_QUEUE": QUEUE,
        "DAARION_AGENTS_RUN_LEASE_SECONDS": "2",
        "DAARION_AGENTS_RUN_SWEEP_SECONDS": "0.5",
        "DAARION_LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def faults_web(faults_env, tmp_path_factory) -> Iterator[ServerProcess]:
    server = start_asgi_server(faults_env, tmp_path_factory.mktemp("faults-web"), name="faults-web")
    yield server
    server.stop()


@pytest.fixture
def client(faults_web, transactional_db) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=faults_web.url, timeout=30) as http:
        yield http


def _worker(env: dict[str, str], logs: Path, name: str) -> ServerProcess:
    return start_celery_worker(env, logs, queues=QUEUE, pool="threads", concurrency=4, name=name)


def _outcomes(worker: ServerProcess, run_id: str) -> list[str]:
    """What each agents.execute_run of `run_id` returned on this worker (its JSON log's
    "succeeded" lines carry the task's name, arguments and return value)."""
    outcomes = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        try:
            data = json.loads(line).get("data") or {}
        except ValueError:
            continue
        if data.get("name") == "agents.execute_run" and run_id in str(data.get("args")) and "return_value" in data:
            outcomes.append(str(data["return_value"]).strip("'"))
    return outcomes


def test_a_killed_worker_leaves_the_run_interrupted_and_a_redelivery_does_not_rerun_it(
    client, faults_env, tmp_path, agents_headers, sofia, llm_routes, scripted
):
    model = llm_routes("faults-kill")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": SLOW, "word_delay": 0.4}])
    sofia(model)
    doomed = _worker(faults_env, tmp_path, "doomed")
    survivor = beat = None
    try:
        with client.stream("POST", f"{AGENT}/chat", headers=agents_headers, json={"message": "go", "stream": True}) as response:
            run_id = response.headers["x-daarion-run-id"]
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "text-delta":
                    break  # the tool has run; the answer is streaming
        assert Run.objects.get(pk=run_id).status == "running"
        os.kill(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait()
        requests_so_far = len(scripted.seen(model))
        survivor = _worker(faults_env, tmp_path, "survivor")
        beat = start_celery_beat(faults_env, tmp_path)
        wait_until(lambda: Run.objects.get(pk=run_id).status != "running", "the sweep to end the run", 30)
        run = Run.objects.get(pk=run_id)
        assert run.status == "interrupted" and run.error["type"] == "run_interrupted"
        # What the dead worker had streamed is kept: the tool's part and the text so far.
        parts = run.message["parts"]
        assert parts[1]["type"] == "tool-followups.create" and parts[1]["state"] == "output-available"
        assert parts[-1]["type"] == "text" and SLOW.startswith(parts[-1]["text"].strip())
        chunks, _, done = parse_sse(client.get(f"/internal/agents/runs/{run_id}/stream", headers=agents_headers).text)
        assert done and [c["type"] for c in chunks[-2:]] == ["error", "finish"]
        assert "run_interrupted" in chunks[-2]["errorText"]
        assert_protocol(chunks)

        # The broker redelivers the dead worker's message (here: sent again): nothing runs.
        execute_run.apply_async((run_id,), queue=QUEUE)
        wait_until(lambda: _outcomes(survivor, run_id) == ["not-queued"], "the redelivered task to be refused", 20)
        assert Run.objects.get(pk=run_id).status == "interrupted"
        assert len(scripted.seen(model)) == requests_so_far
        assert Followup.objects.filter(title="Exactly once").count() == 1
    finally:
        for process in (beat, survivor, doomed):
            if process is not None:
                process.stop()


def test_two_workers_never_run_the_same_run(client, faults_env, tmp_path, agents_headers, sofia, llm_routes, scripted):
    model = llm_routes("faults-twice")
    scripted.script(model, [{"calls": [("followups__create", FOLLOWUP_ARGS)]}, {"text": "Once.", "delay": 0.3}])
    sofia(model)
    first, second = _worker(faults_env, tmp_path, "first"), _worker(faults_env, tmp_path, "second")
    try:
        started = client.post(f"{AGENT}/runs", headers=agents_headers, json={"message": "go"})
        run_id = started.json()["id"]
        for _ in range(5):  # duplicates racing the original
            execute_run.apply_async((run_id,), queue=QUEUE)

        def all_answered() -> bool:
            return len(_outcomes(first, run_id)) + len(_outcomes(second, run_id)) == 6

        wait_until(all_answered, "all six tasks to finish", 30)
        outcomes = sorted(_outcomes(first, run_id) + _outcomes(second, run_id))
        assert outcomes.count("succeeded") == 1, outcomes
        assert set(outcomes) - {"succeeded"} <= {"not-queued", "leased-elsewhere"}
        assert Run.objects.get(pk=run_id).status == "succeeded"
        assert len(scripted.seen(model)) == 2  # one call per step, once
        assert Followup.objects.filter(title="Exactly once").count() == 1
    finally:
        first.stop()
        second.stop()


def test_a_run_past_its_time_limit_is_stopped_and_interrupted(
    client, faults_env, tmp_path, agents_headers, sofia, llm_routes, scripted
):
    model = llm_routes("faults-slow")
    scripted.script(model, [{"text": SLOW, "word_delay": 1.0}])  # ten words: ten seconds
    sofia(model)
    worker = _worker({**faults_env, "DAARION_AGENTS_RUN_TIME_LIMIT_SECONDS": "3"}, tmp_path, "limited")
    try:
        response = client.post(f"{AGENT}/chat", headers=agents_headers, json={"message": "go"})
        assert response.status_code == 504 and response.json()["error"]["type"] == "run_time_limit"
        run = Run.objects.get(pk=response.headers["x-daarion-run-id"])
        # Stopped mid-answer: what had streamed is kept (on a slow host, possibly nothing yet).
        assert run.status == "interrupted" and SLOW.startswith(run.result["reply"]) and run.result["reply"] != SLOW
        chunks, _, done = parse_sse(client.get(f"/internal/agents/runs/{run.pk}/stream", headers=agents_headers).text)
        types = [c["type"] for c in chunks]
        assert done and types[-2:] == ["error", "finish"] and "run_time_limit" in chunks[-2]["errorText"]
        assert types.count("text-start") == types.count("text-end")  # an open text part is closed
    finally:
        worker.stop()
