"""Bench only: the in-request agent turn that durable runs replaced (issue #12), as a baseline
for bench/runs_bench.py. Not part of the product.

The product's ASGI app (daarion.asgi) plus one route, `POST /internal/bench-inrequest/agents/
{agent_id}/chat`, which does what `POST /internal/agents/{agent_id}/chat` did before runs:
the same service-API handler and token auth (`agents` scope), the same body (ChatIn), then
`turn_prepare` and the turn's events encoded with `UIChunks` + `sse` straight into the
response, inside the request. Every other path is the product's.

    python -m uvicorn bench.inrequest_app:application    (runs_bench.py starts it)
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

# First: importing the product's ASGI app sets Django up, which the imports below need.
from daarion.asgi import application  # noqa: E402,F401 - sets Django up; served as is
from django.conf import settings  # noqa: E402
from django.http import HttpRequest, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402
from ninja import NinjaAPI  # noqa: E402

from apps.agents.pipeline import PreparedTurn, TurnInput, turn_events, turn_prepare  # noqa: E402
from apps.agents.schemas import ChatIn  # noqa: E402
from apps.agents.stream import HEADERS, UIChunks  # noqa: E402
from daarion.infra import sse  # noqa: E402
from apps.access.auth import ServiceTokenAuth, principal_of  # noqa: E402
from apps.access.choices import Scope  # noqa: E402
from daarion.infra.errors import ValidationFailed  # noqa: E402
from daarion.urls import urlpatterns as product_urlpatterns  # noqa: E402

logger = logging.getLogger(__name__)

bench_api = NinjaAPI(urls_namespace="bench-inrequest", docs_url=None, openapi_url=None)


async def _body(prepared: PreparedTurn) -> AsyncIterator[bytes]:
    """The turn's SSE body, produced while the request is open (the pre-run design)."""
    encoder = UIChunks()
    try:
        async for event in turn_events(prepared):
            for chunk in encoder.chunks(event):
                yield sse.event(chunk)
    except Exception:  # noqa: BLE001 - the status line is sent; only an in-band error is left
        logger.exception("bench in-request turn crashed")
        yield sse.event({"type": "error", "errorText": "internal_error: the agent turn failed"})
    yield sse.DONE


@bench_api.post("/agents/{agent_id}/chat", auth=ServiceTokenAuth(Scope.AGENTS.value))
async def chat(request: HttpRequest, agent_id: str, payload: ChatIn) -> Any:
    principal_of(request).ensure_can_act_for(agent_id)
    problems = payload.problems()
    if problems:
        raise ValidationFailed("; ".join(f"{p['path']}: {p['message']}" for p in problems), details=problems)
    turn = TurnInput(
        agent_id=agent_id,
        message=payload.message or "",
        microdao_id=payload.microdao_id,
        channel_id=payload.channel_id,
        session_id=payload.session_id,
        user_id=payload.user_id,
        context=[item.dict() for item in payload.context],
        request_id=getattr(request, "request_id", None),
    )
    prepared = await turn_prepare(turn)
    return StreamingHttpResponse(_body(prepared), content_type="text/event-stream", headers=HEADERS)


urlpatterns = [path("internal/bench-inrequest/", bench_api.urls), *product_urlpatterns]
# Django reads ROOT_URLCONF per request: this module's patterns (the bench route first).
settings.ROOT_URLCONF = __name__
