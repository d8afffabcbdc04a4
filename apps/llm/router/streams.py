"""A routed streamed chat: open until the first event, then the answer's events, with usage
recorded however the stream ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from apps.llm import ratelimit
from apps.llm.choices import UsageStatus
from apps.llm.providers import ProviderError, StreamEvent, Usage
from apps.llm.providers.stub import count_words
from apps.llm.router.admission import admit, completion_estimate, refusals_recorded, settle_call
from apps.llm.router.calls import Attempt, CallContext, ChatCall, Outcome, chat_request, fit_params
from apps.llm.router.candidates import fresh_registry, resolve_model
from apps.llm.router.credentials import call_secrets, scrub_error
from apps.llm.router.loop import Route, record_served, route_call
from apps.llm.router.tool_names import ToolNames
from apps.llm.selectors import DeploymentSpec, ModelSpec, Registry
from daarion.infra.errors import DaarionError, UpstreamError
from daarion.infra.redaction import redact


class Stream:
    """A routed streamed chat. `open()` picks a deployment and waits for its first event
    (retrying and falling back until one answers); `events()` yields the answer. Usage is
    recorded when the stream ends, fails or is cancelled, with the partial count then."""

    def __init__(self, call: ChatCall, ctx: CallContext) -> None:
        self.call = call
        self.ctx = ctx
        self.outcome = Outcome(logical_model=call.model)
        self._registry: Registry | None = None
        self._model: ModelSpec | None = None
        self._served: ModelSpec | None = None
        self._lease: ratelimit.Lease | None = None
        self._iterator: AsyncIterator[StreamEvent] | None = None
        self._first: StreamEvent | None = None
        self._deployment: DeploymentSpec | None = None  # the one serving, for scrubbing its errors
        self._api_key: str | None = None
        self._secrets: tuple[str, ...] = ()
        self._names = ToolNames(call.tools, call.messages)
        self._prompt_estimate = 0
        self._estimate = 0
        self._completion_text: list[str] = []
        self._finished = False
        self._recorded = False
        self._admitted = False  # refused calls (unknown model, rate limit) record no usage

    @property
    def prompt_estimate(self) -> int:
        """The prompt's size as estimated before the upstream's count arrives (after admit)."""
        return self._prompt_estimate

    async def admit(self) -> None:
        """Model lookup and rate limits: errors here are plain HTTP errors, before any byte."""
        estimate = self._estimate = ratelimit.estimate_tokens(self.call.messages, self.call.cap)
        self._prompt_estimate = max(1, estimate - completion_estimate(self.call))
        async with refusals_recorded(self.ctx, self.outcome, stream=True):
            self._registry = await fresh_registry(self.call.model)
            self._model = resolve_model(self._registry, self.call.model)
            self._lease = await admit(
                self._registry, self.ctx, estimate, self.outcome, self._model, completion_estimate(self.call)
            )
        self._admitted = True

    async def open(self) -> None:
        assert self._registry is not None and self._model is not None, "admit() first"
        request = chat_request(self.call, self._names)
        dropped: tuple[str, ...] = ()

        def refusal(route: Route) -> Attempt | None:
            nonlocal dropped
            request.params, dropped, refused = fit_params(self.call, route.client, route.spec, route.deployment)
            return refused

        async def attempt(route: Route) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
            # A stream counts as answered once its first event arrives: until then a failure
            # is retried or falls back like any call's.
            request.model, request.api_key = route.deployment.upstream_model, route.api_key
            iterator = route.client.stream(request).__aiter__()
            try:
                return iterator, await iterator.__anext__()
            except StopAsyncIteration:
                return iterator, StreamEvent("finish", finish_reason="stop")

        try:
            (self._iterator, self._first), route = await route_call(
                self._registry, self._model, self.ctx, self.outcome, self._estimate, attempt, refusal=refusal
            )
        except DaarionError as exc:
            await self.finish(UsageStatus.ERROR, exc.type)
            raise
        except asyncio.CancelledError:
            await self.finish(UsageStatus.CANCELLED, "client_disconnected")
            raise
        self.outcome.ttft_ms = (time.perf_counter() - self.outcome.started) * 1000
        self._deployment, self._api_key = route.deployment, route.api_key
        self._secrets = call_secrets(route.deployment, route.api_key)
        record_served(self.outcome, route.spec, route.deployment, None, "stop")
        self.outcome.dropped_params = dropped
        self._served = route.spec

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The answer's events, tool names mapped back. Mid-stream upstream failures raise
        UpstreamError (no fallback once the caller has seen part of an answer)."""
        assert self._iterator is not None and self._first is not None, "open() first"
        status, error_type = UsageStatus.CANCELLED, "client_disconnected"
        try:
            event: StreamEvent | None = self._first
            while event is not None:
                if self._secrets and event.kind in ("text", "reasoning", "tool_call"):
                    # Per piece: a key the upstream repeats in its answer never reaches the caller
                    # (one split across two pieces could; keys are single tokens in practice).
                    event.text = redact(event.text, self._secrets)
                    event.arguments = redact(event.arguments, self._secrets)
                if event.kind in ("text", "reasoning"):
                    self._completion_text.append(event.text)
                elif event.kind == "tool_call" and event.name:
                    event.name = self._names.back(event.name)
                    self._completion_text.append(event.arguments)
                elif event.kind == "tool_call":
                    self._completion_text.append(event.arguments)
                elif event.kind == "finish":
                    self.outcome.usage = event.usage or self._estimated_usage()
                    event.usage = self.outcome.usage
                    self.outcome.finish_reason = event.finish_reason or "stop"
                    event.provider, event.model_resolved = self.outcome.provider, self.outcome.model_resolved
                    self._finished = True
                yield event
                if self._finished:
                    break
                try:
                    event = await self._iterator.__anext__()
                except StopAsyncIteration:
                    event = None if self._finished else StreamEvent("finish", finish_reason="stop")
            status, error_type = UsageStatus.OK, ""
        except ProviderError as exc:
            status, error_type = UsageStatus.ERROR, f"upstream_{exc.kind}"
            if self._deployment is not None:
                scrub_error(exc, self._deployment, self._api_key)
            raise UpstreamError(f"upstream stream failed: {exc.message}", details={"error_type": exc.kind}) from exc
        finally:
            closer = getattr(self._iterator, "aclose", None)
            if closer is not None and not self._finished:
                try:
                    await closer()  # closes the upstream connection, so the upstream stops
                except Exception:  # noqa: BLE001
                    pass
            await self.finish(status, error_type)

    def finish_with(self, task: asyncio.Task | None) -> None:
        """Makes sure usage is recorded and the rate-limit lease released when `task` ends,
        even if the response body never started (a client gone right after the headers)."""
        if task is None:
            return

        def done(_: asyncio.Task) -> None:
            if self._admitted and not self._recorded:
                task.get_loop().create_task(self.abandon())

        task.add_done_callback(done)

    async def abandon(self) -> None:
        if self._iterator is not None and not self._finished:
            closer = getattr(self._iterator, "aclose", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:  # noqa: BLE001 - the upstream is going away either way
                    pass
        await self.finish(UsageStatus.CANCELLED, "client_disconnected")

    def _estimated_usage(self) -> Usage:
        return Usage(self._prompt_estimate, count_words("".join(self._completion_text)))

    async def finish(self, status: str, error_type: str = "") -> None:
        if self._recorded:
            return
        self._recorded = True
        if not self._finished and status != UsageStatus.OK:
            # Partial usage: what the caller received before the stream stopped.
            self.outcome.usage = self._estimated_usage() if self._completion_text else Usage()
        await settle_call(
            self.ctx, self.outcome, self._lease, self._served or self._model, status=status, error_type=error_type, stream=True
        )
