"""Shared fixtures: real PostgreSQL+pgvector and Redis (from the environment or the embedded
stack), the ASGI app served over real HTTP, a real Celery worker, and service tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from devtools.testing import ServerProcess, database_url_for, start_asgi_server, start_celery_worker


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with no counters, caches or version keys of ours in Redis.

    Celery's own keys are left alone: a running worker owns them.
    """
    from daarion.infra.redis_client import get_redis

    client = get_redis()
    prefix = settings.REDIS_KEY_PREFIX
    keep = prefix + "celery:"
    doomed = [k for k in client.scan_iter(match=prefix + "*", count=1000) if not k.decode().startswith(keep)]
    if doomed:
        client.delete(*doomed)
    yield


@pytest.fixture(scope="session")
def server_env(django_db_setup, django_db_blocker, tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses that must use the test database and our Redis prefix."""
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for(settings.DATABASES["default"])
    env["REDIS_URL"] = settings.REDIS_URL
    env["DAARION_REDIS_PREFIX"] = settings.REDIS_KEY_PREFIX
    env["DAARION_DATA_DIR"] = str(settings.DATA_DIR)
    env["DJANGO_SETTINGS_MODULE"] = "daarion.settings"
    env.setdefault("DAARION_LOG_LEVEL", "WARNING")
    # Metrics of every server and worker process of the session add up in one folder, as in
    # production (daarion/observability/metrics.py); a fresh one per session.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path_factory.mktemp("prometheus"))
    return env


@pytest.fixture(scope="session")
def asgi_server(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    """The ASGI app under uvicorn on 127.0.0.1, against the test database.

    Tests that use it must write through `transactional_db` so the server sees their rows.
    """
    server = start_asgi_server({**server_env, "DATABASE_POOL": "1"}, tmp_path_factory.mktemp("asgi"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    """A real Celery worker process consuming every queue, against the test database."""
    worker = start_celery_worker(server_env, tmp_path_factory.mktemp("worker"))
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def agents_worker(server_env, tmp_path_factory) -> Iterator[ServerProcess]:
    """A real Celery worker of the `agents` queue (agent runs), with a thread pool as in production."""
    worker = start_celery_worker(
        server_env, tmp_path_factory.mktemp("agents-worker"), queues="agents", pool="threads", concurrency=16, name="agents"
    )
    yield worker
    worker.stop()


@pytest.fixture
def api(asgi_server, transactional_db) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def make_agents(db) -> Callable[..., None]:
    """make_agents(*ids): a small blueprint for each id not stored yet, so that tools,
    agent rate-limit policies and service tokens may name them (each must name real agents)."""
    from apps.agents.models import Agent
    from apps.agents.services import agent_create

    def _make(*agent_ids: str) -> None:
        for agent_id in agent_ids:
            if not Agent.objects.filter(pk=agent_id).exists():
                agent_create(
                    agent_id=agent_id, name=agent_id.split(":", 1)[-1].title(), microdao_id="microdao:7", model="test-model"
                )

    return _make


@pytest.fixture
def make_token(db, make_agents) -> Callable[..., str]:
    """make_token(scopes=[...], agents=None, **kw) -> the raw bearer token. The agents it is
    bound to are created first (make_agents) when they are not stored yet: a token's agents
    must name real agents."""
    from apps.access.services import service_token_create

    counter = iter(range(1, 10_000))

    def _make(scopes: list[str] | None = None, agents: list[str] | None = None, **kwargs) -> str:
        name = kwargs.pop("name", f"test-token-{next(counter)}")
        make_agents(*(agents or []))
        return service_token_create(name=name, scopes=scopes or ["llm"], agents=agents, **kwargs).raw

    return _make


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def bearer() -> Callable[[str], dict[str, str]]:
    return auth_header


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[str]:
    """Base URL of a fake OpenAI-compatible upstream (testsupport/fake_llm.py) in its own
    process; its behaviour is picked by the model name (see that module)."""
    from testsupport.fake_llm import start_subprocess

    process, url = start_subprocess()
    yield url
    process.terminate()
    process.wait(10)
