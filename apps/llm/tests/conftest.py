"""Fixtures of the LLM proxy tests: a registry pointing at the stub and at the fake upstream."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from apps.llm import services, usage
from apps.llm.models import LogicalModel, Provider, UsageRecord


@pytest.fixture
def stub_provider(db) -> Provider:
    return services.provider_create(name="stub", kind="stub")


@pytest.fixture
def fake_provider(db, fake_llm) -> Provider:
    # No retries by default and quick timeouts, so failure tests stay fast.
    return services.provider_create(
        name="fake",
        kind="openai_compatible",
        base_url=fake_llm,
        api_key="sk-fake-key-123456",
        timeout_seconds=2.0,
        max_retries=0,
        extra_headers={"X-Test": "yes"},
    )


@pytest.fixture
def make_model(db) -> Callable[..., LogicalModel]:
    """make_model(name, provider, upstream, fallbacks=..., weight=..., **model fields)."""

    def _make(name: str, provider: Provider, upstream: str | None = None, *, weight: int = 1, **fields) -> LogicalModel:
        model = LogicalModel.objects.filter(name=name).first() or services.logical_model_create(name=name, **fields)
        services.deployment_create(logical_model=model, provider=provider, upstream_model=upstream or name, weight=weight)
        return model

    return _make


@pytest.fixture
def stub_model(stub_provider, make_model) -> LogicalModel:
    return make_model("dagi-stub", stub_provider, "dagi-stub", input_price_per_mtok=1, output_price_per_mtok=2)


@pytest.fixture
def fake_stats(fake_llm) -> Callable[[], dict]:
    httpx.post(f"{fake_llm}/_reset")
    return lambda: httpx.get(f"{fake_llm}/_stats").json()


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
    """Polls until predicate() is truthy (no timing assertions: a deadline, then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def usage_rows(*, count: int = 1, **filters) -> list[UsageRecord]:
    """The usage records matching `filters`, once at least `count` of them are in the database.

    Drains Redis into the database as beat's `llm.drain_usage` does in production (web
    processes only push their records to Redis, within milliseconds), and this process's own
    queue first (for calls made in process through the gateway).
    """

    def drained() -> list[UsageRecord]:
        usage.push_pending()
        usage.drain_to_database()
        rows = list(UsageRecord.objects.filter(**filters).order_by("created_at"))
        return rows if len(rows) >= count else []

    return wait_for(drained) or list(UsageRecord.objects.filter(**filters).order_by("created_at"))


@pytest.fixture
def llm_headers(make_token, bearer) -> dict[str, str]:
    return bearer(make_token(scopes=["llm"]))


@pytest.fixture
def live(api, llm_headers) -> Callable[[], None]:
    """live(): waits until the server's registry snapshot matches the database (a server
    re-checks the registry version twice a second)."""
    from apps.llm.selectors import load_registry

    def _sync() -> None:
        registry = load_registry()
        expected = {(name, spec.enabled, tuple(d.id for d in spec.deployments)) for name, spec in registry.models.items()}

        def seen() -> bool:
            body = api.get("/internal/llm/models", headers=llm_headers).json()
            return {(m["name"], m["enabled"], tuple(d["id"] for d in m["deployments"])) for m in body["models"]} == expected

        assert wait_for(seen), "the server did not pick up the registry change"

    return _sync
