"""A provider's "test connection": one minimal chat call per deployment, straight to it.

No routing, retries or fallbacks: the operator wants to know whether this provider answers
for each upstream model it serves. Each call leaves a usage record (cost is real), marked as
a test by its channel, and nothing else.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from apps.llm import usage
from apps.llm.choices import Endpoint, UsageStatus
from apps.llm.providers.base import ChatRequest, client_for
from apps.llm.providers.errors import ProviderError
from apps.llm.selectors import DeploymentSpec, ModelSpec, registry_snapshot

# The usage records of test calls carry this channel: filterable, and never an agent's spend.
TEST_CHANNEL = "console:test-connection"
PROBE_MESSAGES = [{"role": "user", "content": "ping"}]


@dataclass(frozen=True)
class DeploymentCheck:
    logical_model: str
    upstream_model: str
    ok: bool
    latency_ms: float
    detail: str  # the answer's first words, or the error
    request_id: str


def _deployments_of(provider_name: str, models: dict[str, ModelSpec]) -> list[tuple[ModelSpec, DeploymentSpec]]:
    found = []
    for model in sorted(models.values(), key=lambda m: m.name):
        for deployment in model.deployments:
            if deployment.provider.name == provider_name:
                found.append((model, deployment))
    return found


async def _probe(model: ModelSpec, deployment: DeploymentSpec) -> DeploymentCheck:
    request_id = f"test-{uuid.uuid4().hex[:16]}"
    started = time.perf_counter()
    ok, detail, used, error_type = False, "", None, ""
    try:
        client = client_for(deployment.provider)
        answer = await asyncio.wait_for(
            client.chat(ChatRequest(messages=PROBE_MESSAGES, model=deployment.upstream_model, max_tokens=1)),
            timeout=deployment.provider.timeout,
        )
        ok, detail, used = True, (answer.content or "(empty answer)")[:120], answer.usage
    except ProviderError as exc:
        detail, error_type = f"{exc.kind}: {exc.message}"[:500], f"upstream_{exc.kind}"
    except TimeoutError:
        detail, error_type = f"timeout after {deployment.provider.timeout:g} s", "upstream_timeout"
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    prompt = used.prompt_tokens if used else 0
    completion = used.completion_tokens if used else 0
    usage.emit(
        usage.new_record(
            request_id=request_id,
            agent_id="",
            microdao_id="",
            channel_id=TEST_CHANNEL,
            endpoint=Endpoint.PROXY,
            logical_model=model.name,
            provider=deployment.provider.name,
            upstream_model=deployment.upstream_model,
            status=UsageStatus.OK if ok else UsageStatus.ERROR,
            error_type=error_type,
            latency_ms=latency_ms,
            ttft_ms=None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cost=model.cost(prompt, completion),
            stream=False,
            attempts=1,
        )
    )
    return DeploymentCheck(model.name, deployment.upstream_model, ok, latency_ms, detail, request_id)


async def provider_test_connection(*, provider_name: str) -> list[DeploymentCheck]:
    """One minimal call (max_tokens=1) per deployment of the provider in the live registry."""
    registry = await registry_snapshot.aget(recheck=True)
    targets = _deployments_of(provider_name, registry.models)
    return list(await asyncio.gather(*(_probe(model, deployment) for model, deployment in targets)))
