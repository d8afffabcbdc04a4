"""The two Ninja APIs: `/internal` (service APIs) and `/v1` (OpenAI-compatible), with one
error envelope. Apps contribute routers; this module only wires them and renders errors.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Router, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.parser import Parser

from apps.access.auth import ServiceTokenAuth, ensure_scope, principal_of
from daarion.infra.errors import STATUS_TYPES, DaarionError, error_response, render_error
from daarion.infra.outages import outage_error

logger = logging.getLogger(__name__)


def _loc_to_path(loc: tuple | list) -> str:
    parts = [str(p) for p in loc]
    # Ninja puts the view's parameter name after the source ("body", "payload", "model");
    # callers know their JSON, not our parameter names, so drop it.
    if len(parts) >= 2 and parts[0] == "body":
        parts = ["body", *parts[2:]]
    return ".".join(parts)


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [
        {"path": _loc_to_path(err.get("loc", ())), "message": err.get("msg", ""), "type": err.get("type", "")} for err in errors
    ]


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(DaarionError)
    def _daarion(request: HttpRequest, exc: DaarionError) -> HttpResponse:
        return render_error(exc)

    @api.exception_handler(NinjaValidationError)
    def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
        details = validation_details(exc.errors)
        first = details[0] if details else {"path": "", "message": "invalid request"}
        message = f"invalid request: {first['path']}: {first['message']}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more)"
        return error_response(422, "validation_error", message, details)

    @api.exception_handler(AuthenticationError)
    def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return error_response(401, "unauthorized", "a valid service token is required")

    @api.exception_handler(HttpError)
    def _http(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, RequestDataTooBig):
            return error_response(413, "payload_too_large", "request body is over the size limit")
        status = exc.status_code
        return error_response(status, STATUS_TYPES.get(status, "error"), str(exc.message))

    @api.exception_handler(RequestDataTooBig)
    def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return error_response(413, "payload_too_large", "request body is over the size limit")

    @api.exception_handler(Http404)
    def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, "not_found", str(exc) or "not found")

    @api.exception_handler(Exception)
    def _crash(request: HttpRequest, exc: Exception) -> HttpResponse:
        outage = outage_error(exc)
        if outage is not None:  # Postgres or Redis down: a named 503 with Retry-After, not a 500
            logger.warning("%s %s: %s", request.method, request.path, outage.type, exc_info=exc)
            return render_error(outage)
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(
            500,
            "internal_error",
            "internal error; the request id in x-request-id finds it in the logs",
            {"request_id": getattr(request, "request_id", None)},
        )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class StrictJSONParser(Parser):
    """JSON bodies as JSON defines them: Python's reader also takes NaN, Infinity and -Infinity,
    which no JSON peer (an upstream LLM, a tool's HTTP target, jsonb) accepts back. Ninja
    answers a body this refuses with 400 bad_request."""

    def parse_body(self, request: HttpRequest) -> Any:
        return json.loads(request.body, parse_constant=_refuse_constant)


# What any operation may answer besides its success (docs/ARCHITECTURE.md: "the right status"):
# auth and scope (401/403), bad input (400/413/422), unknown ids (404), conflicts (409),
# limits (429), upstream and outage failures (502/503/504) and, should it ever happen, 500.
_ERROR_STATUSES = {
    "400": "Unreadable body or a bad request.",
    "401": "No token, or an unknown, disabled or expired one.",
    "403": "A token without the scope, or not allowed to act for the agent or microDAO.",
    "404": "No such route, model, agent or object.",
    "409": "Conflicts with stored data.",
    "413": "The body is over the limit.",
    "422": "Broke a rule; `details` lists `{path, message}` per problem.",
    "429": "A rate limit or budget; `Retry-After` says when to retry.",
    "500": "Internal error; the request id in `x-request-id` finds it in the logs.",
    "502": "The upstream failed.",
    "503": "No healthy upstream, or a store (database, Redis) is unavailable; `Retry-After` says when to retry.",
    "504": "The upstream timed out.",
}
HOUSE_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}
OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}


class DocumentedErrorsAPI(NinjaAPI):
    """A NinjaAPI whose OpenAPI document declares, on every operation, the error statuses it may
    answer with the door's error schema (`error_schemas`: path prefix -> (name, schema), the
    longest prefix first; unlisted paths take the last)."""

    def __init__(self, *args: Any, error_schemas: list[tuple[str, str, dict[str, Any]]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error_schemas = error_schemas

    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for _, name, body in self.error_schemas:
            components[name] = body
        for path, operations in schema.get("paths", {}).items():
            name = next((n for prefix, n, _ in self.error_schemas if path.startswith(prefix)), self.error_schemas[-1][1])
            content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
            for operation in operations.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                for status, description in _ERROR_STATUSES.items():
                    if int(status) not in responses and status not in responses:
                        responses[status] = {"description": description, "content": content}
        return schema


internal_api = DocumentedErrorsAPI(
    title="DAARION control plane — internal API",
    version="1.0.0",
    description="Service APIs for the agent runtime: LLM proxy, agent memory, toolcore, agents.",
    urls_namespace="internal",
    parser=StrictJSONParser(),
    docs_url="/docs",
    openapi_url="/openapi.json",
    error_schemas=[("", "Error", HOUSE_ERROR_SCHEMA)],
)
install_error_handlers(internal_api)

openai_api = DocumentedErrorsAPI(
    title="DAARION control plane — OpenAI-compatible API",
    version="1.0.0",
    urls_namespace="v1",
    parser=StrictJSONParser(),
    docs_url="/docs",
    openapi_url="/openapi.json",
    # /v1 answers errors in its clients' shapes (apps/llm/errors.py).
    error_schemas=[("/v1/messages", "AnthropicError", ANTHROPIC_ERROR_SCHEMA), ("", "OpenAIError", OPENAI_ERROR_SCHEMA)],
)
install_error_handlers(openai_api)


class WhoAmIOut(Schema):
    name: str
    prefix: str
    scopes: list[str]
    agents: list[str] | None
    expires_at: str | None


whoami_router = Router(tags=["auth"])


@whoami_router.get("/whoami", response=WhoAmIOut, auth=ServiceTokenAuth(None))
async def whoami(request: HttpRequest, scope: str | None = None, agent_id: str | None = None) -> dict[str, Any]:
    """The calling token's name, scopes and agents: a way to check credentials.

    `?scope=llm` answers 403 unless the token has that scope; `?agent_id=agent:sofia` answers
    403 unless the token may act for that agent — the same checks the other routes make.
    """
    principal = principal_of(request)
    if scope is not None:
        ensure_scope(principal, scope)
    if agent_id is not None:
        principal.ensure_can_act_for(agent_id)
    return {
        "name": principal.name,
        "prefix": principal.prefix,
        "scopes": sorted(principal.scopes),
        "agents": None if principal.agents is None else sorted(principal.agents),
        "expires_at": principal.expires_at.isoformat() if principal.expires_at else None,
    }


def _mount_routers() -> None:
    # Imported here, not at module top, so an app's router can import daarion.api's helpers.
    from apps.agents.api import router as agents_router
    from apps.llm.api import openai_router, router as llm_router
    from apps.memory.api import router as memory_router
    from apps.tools.api import router as tools_router

    internal_api.add_router("", whoami_router)
    internal_api.add_router("/llm", llm_router)
    internal_api.add_router("/agent-memory", memory_router)
    internal_api.add_router("/tools", tools_router)
    internal_api.add_router("/agents", agents_router)
    openai_api.add_router("", openai_router)


_mount_routers()
