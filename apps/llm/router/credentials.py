"""A call's credentials kept out of what it returns: errors, answers, stream pieces
(daarion/infra/redaction.py)."""

from __future__ import annotations

from apps.llm.providers import ChatResponse, ProviderError, ToolCall
from apps.llm.selectors import DeploymentSpec
from daarion.infra.redaction import redact, secret_values


def call_secrets(deployment: DeploymentSpec, api_key: str | None) -> tuple[str, ...]:
    """Every credential a call to `deployment` carried: the call's own key, the provider's, and
    its extra headers' values (some providers take keys there)."""
    provider = deployment.provider
    return secret_values([api_key, provider.api_key, *(value for _, value in provider.extra_headers)])


def scrub_error(exc: ProviderError, deployment: DeploymentSpec, api_key: str | None) -> ProviderError:
    """`exc` with the call's credentials removed from its message, in place: the message goes to
    the caller (error, attempts, a stream's errorText), the logs and run rows (daarion/infra/redaction.py)."""
    exc.message = redact(exc.message, call_secrets(deployment, api_key))
    return exc


def scrub_answer(response: ChatResponse, secrets: tuple[str, ...]) -> None:
    """An answer with the call's credentials removed, in place: an upstream that repeats the
    request's headers in a successful answer must not hand the key to the caller either."""
    for answer in (response, *response.alternatives):
        if answer.content:
            answer.content = redact(answer.content, secrets)
        if answer.reasoning:
            answer.reasoning = redact(answer.reasoning, secrets)
        answer.tool_calls = [ToolCall(c.id, c.name, redact(c.arguments, secrets)) for c in answer.tool_calls]
