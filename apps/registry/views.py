"""The management API's viewsets: thin edges that parse with a serializer, call the owning
app's services under the caller's name in the change log, and shape the answer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from typing import Any, Generic, TypeVar

from django.db import transaction
from django.db.models import Model, Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentSecret
from apps.llm import services as llm_services
from apps.llm.models import LogicalModel, Provider, RateLimitPolicy
from apps.memory import services as memory_services
from apps.memory.models import EmbeddingModel
from apps.registry import serializers as s
from apps.registry.authentication import actor_of
from apps.registry.bodies import ChunkedBodyMixin
from apps.registry.documents import registry_apply, registry_export
from apps.registry.formats import YAMLParser, YAMLRenderer
from apps.registry.services import agent_secrets_apply
from apps.tools import services as tool_services
from apps.tools.models import McpServer, Tool
from apps.access.audit import acting_as
from daarion.infra.errors import Conflict, NotFound, UpstreamError, ValidationFailed
from apps.access.models import ChangeRecord


def _refuse_rename(current: str, data: dict[str, Any], field: str, path: str | None = None) -> None:
    path = path or field
    if field in data and data.pop(field) != current:
        raise ValidationFailed(
            f"{path}: cannot be changed (it names the object); create a new one instead",
            details=[{"path": path, "message": "cannot be changed; create a new object instead"}],
        )


_LIST_DOC = "Filter with the listed query parameters, `search=` across names, `ordering=`, `page=` / `page_size=`."


_M = TypeVar("_M", bound=Model)  # the row type of a registry viewset


class RegistryViewSet(ChunkedBodyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet, Generic[_M]):
    """List / retrieve / create / update / partial update / delete, every write through
    `write()` / `remove()` (the owning app's services) inside one transaction."""

    lookup_value_regex = "[^/]+"  # ids contain dots and colons: projects.list, agent:sofia
    input_serializer: type[s.serializers.Serializer]
    output_serializer: type[s.serializers.Serializer]
    # Model field -> API field, for error paths (a tool's `tool_id` is `id` here).
    error_aliases: dict[str, str] = {}
    filter_fields: dict[str, tuple[str, type]] = {}

    def get_serializer_class(self):  # noqa: ANN201
        if self.action == "secret":
            return s.SecretValueIn
        if self.action in ("create", "update", "partial_update"):
            return self.input_serializer
        return self.output_serializer

    # Several service calls of one request (a model and its deployments) commit together.
    atomic_writes = True

    @contextmanager
    def writing(self, request: Request) -> Iterator[None]:
        with acting_as(actor_of(request), "api"), transaction.atomic() if self.atomic_writes else nullcontext():
            try:
                yield
            except ValidationFailed as exc:
                raise exc.within(aliases=self.error_aliases) from exc

    def _validated(self, request: Request, *, partial: bool) -> dict[str, Any]:
        serializer = self.input_serializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def _out(self, obj: Model, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=obj.pk)  # what the services stored, relations included
        return Response(self.output_serializer(fresh, context=self.get_serializer_context()).data, status=status_code)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._validated(request, partial=False)
        with self.writing(request):
            obj = self.write(None, data)
        return self._out(obj, status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, partial: bool = False, **kwargs: Any) -> Response:
        obj = self.get_object()
        data = self._validated(request, partial=partial)
        with self.writing(request):
            obj = self.write(obj, data)
        return self._out(obj)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.get_object()
        with self.writing(request):
            self.remove(obj)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def write(self, obj: _M | None, data: dict[str, Any]) -> _M:
        raise NotImplementedError

    def remove(self, obj: _M) -> None:
        raise NotImplementedError


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class ProviderViewSet(RegistryViewSet[Provider]):
    """LLM providers. `api_key` is write-only; reads show whether one is set and when."""

    queryset = Provider.objects.all()
    lookup_field = "name"
    input_serializer, output_serializer = s.ProviderIn, s.ProviderOut
    filter_fields = {"kind": ("kind", str), "enabled": ("enabled", bool)}
    search_fields = ["name", "base_url"]
    ordering_fields = ["name", "kind", "updated_at"]

    def write(self, obj: Provider | None, data: dict[str, Any]) -> Provider:
        if obj is None:
            return llm_services.provider_create(**{**data, "api_key": data.get("api_key") or ""})
        _refuse_rename(obj.name, data, "name")
        return llm_services.provider_update(provider=obj, **data)

    def remove(self, obj: Provider) -> None:
        llm_services.provider_delete(provider=obj)


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class LogicalModelViewSet(RegistryViewSet[LogicalModel]):
    """Logical models with their deployments (a list that replaces the stored one when given)
    and fallbacks (checked for unknown names and loops)."""

    queryset = LogicalModel.objects.prefetch_related("deployments__provider")
    lookup_field = "name"
    input_serializer, output_serializer = s.LogicalModelIn, s.LogicalModelOut
    filter_fields = {
        "enabled": ("enabled", bool),
        "can_embed": ("can_embed", bool),
        "provider": ("deployments__provider__name", str),
    }
    search_fields = ["name", "description"]
    ordering_fields = ["name", "updated_at", "context_window"]

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        return super().filter_queryset(queryset).distinct()

    def write(self, obj: LogicalModel | None, data: dict[str, Any]) -> LogicalModel:
        deployments = data.pop("deployments", None)
        if obj is None:
            model = llm_services.logical_model_create(**data)
        else:
            _refuse_rename(obj.name, data, "name")
            model = llm_services.logical_model_update(model=obj, **data)
        if deployments is not None:
            llm_services.logical_model_deployments_sync(model=model, deployments=[dict(d) for d in deployments])
        return model

    def remove(self, obj: LogicalModel) -> None:
        llm_services.logical_model_delete(model=obj)


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class RateLimitPolicyViewSet(RegistryViewSet[RateLimitPolicy]):
    """Rate-limit policies (default, per agent, per microDAO); scope and subject are fixed."""

    queryset = RateLimitPolicy.objects.all()
    input_serializer, output_serializer = s.RateLimitPolicyIn, s.RateLimitPolicyOut
    filter_fields = {"scope": ("scope", str), "subject": ("subject", str), "enabled": ("enabled", bool)}
    search_fields = ["subject"]
    ordering_fields = ["scope", "subject"]

    def write(self, obj: RateLimitPolicy | None, data: dict[str, Any]) -> RateLimitPolicy:
        if obj is None:
            return llm_services.rate_limit_policy_create(**data)
        # Unchanged keys are not changes; a different scope/subject is refused by the service.
        for name in ("scope", "subject"):
            if name in data and data[name] == getattr(obj, name):
                data.pop(name)
        return llm_services.rate_limit_policy_update(policy=obj, **data)

    def remove(self, obj: RateLimitPolicy) -> None:
        llm_services.rate_limit_policy_delete(policy=obj)


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class ToolViewSet(RegistryViewSet[Tool]):
    """Tools with JSON Schema contracts; `secret_headers` is write-only and merges."""

    queryset = Tool.objects.all()
    lookup_field = "tool_id"
    lookup_url_kwarg = "id"
    input_serializer, output_serializer = s.ToolIn, s.ToolOut
    error_aliases = {"tool_id": "id"}
    filter_fields = {"executor": ("executor", str), "enabled": ("enabled", bool)}
    search_fields = ["tool_id", "name", "description"]
    ordering_fields = ["tool_id", "name", "updated_at"]

    def write(self, obj: Tool | None, data: dict[str, Any]) -> Tool:
        secret_headers = data.pop("secret_headers", None)
        if obj is None:
            return tool_services.tool_create(tool_id=data.pop("tool_id"), secret_headers=secret_headers, **data)
        _refuse_rename(obj.tool_id, data, "tool_id", path="id")
        return tool_services.tool_update(tool=obj, secret_headers=secret_headers, **data)

    def remove(self, obj: Tool) -> None:
        tool_services.tool_delete(tool=obj)


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class McpServerViewSet(RegistryViewSet[McpServer]):
    """Upstream MCP servers whose tools toolcore offers (`<prefix>.<tool>`, executor mcp).
    `headers` is write-only and merges. Creating one queues the sync of its tools;
    `POST mcp-servers/{name}/sync` syncs now and answers the report. Deleting one keeps its
    tools, disabled."""

    queryset = McpServer.objects.all()
    lookup_field = "name"
    input_serializer, output_serializer = s.McpServerIn, s.McpServerOut
    error_aliases = {"secret_headers": "headers"}
    filter_fields = {"enabled": ("enabled", bool)}
    search_fields = ["name", "url", "description"]
    ordering_fields = ["name", "updated_at"]

    def write(self, obj: McpServer | None, data: dict[str, Any]) -> McpServer:
        headers = data.pop("headers", None)
        if obj is None:
            return tool_services.mcp_server_create(name=data.pop("name"), secret_headers=headers, **data)
        _refuse_rename(obj.name, data, "name")
        return tool_services.mcp_server_update(server=obj, secret_headers=headers, **data)

    def remove(self, obj: McpServer) -> None:
        tool_services.mcp_server_delete(server=obj)

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        server = self.get_object()
        with acting_as(actor_of(request), "api"):
            report = tool_services.mcp_server_sync(server=server)
        if not report.ok:
            raise UpstreamError(
                f"sync of MCP server {server.name!r} failed: {report.error}", type="mcp_sync_failed", details=asdict(report)
            )
        return Response(asdict(report))


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class AgentViewSet(RegistryViewSet[Agent]):
    """Agent blueprints; `secrets` is write-only (`{NAME: value}` sets, `{NAME: null}` deletes)."""

    # Secrets without their value column: a response never even decrypts one.
    queryset = Agent.objects.prefetch_related(
        Prefetch("secrets", queryset=AgentSecret.objects.only("id", "agent_id", "name", "updated_at"))
    )
    lookup_field = "id"
    input_serializer, output_serializer = s.AgentIn, s.AgentOut
    filter_fields = {"microdao_id": ("microdao_id", str), "model": ("model", str), "enabled": ("enabled", bool)}
    search_fields = ["id", "name"]
    ordering_fields = ["id", "name", "updated_at"]

    def write(self, obj: Agent | None, data: dict[str, Any]) -> Agent:
        secrets = data.pop("secrets", None)
        if obj is None:
            agent = agent_services.agent_create(agent_id=data.pop("id"), **data)
        else:
            _refuse_rename(obj.id, data, "id")
            agent = agent_services.agent_update(agent=obj, **data)
        if secrets:
            agent_secrets_apply(agent=agent, secrets=secrets)
        return agent

    def remove(self, obj: Agent) -> None:
        agent_services.agent_delete(agent=obj)

    @extend_schema(
        request=s.SecretValueIn,
        responses={200: s.AgentOut},
        methods=["PUT"],
        description="Sets (creates or rotates) one secret of the agent; the value is never returned.",
    )
    @extend_schema(request=None, responses={200: s.AgentOut}, methods=["DELETE"], description="Deletes one secret.")
    @action(detail=True, methods=["put", "delete"], url_path=r"secrets/(?P<secret_name>[^/]+)")
    def secret(self, request: Request, secret_name: str, *args: Any, **kwargs: Any) -> Response:
        """`PUT agents/{id}/secrets/{name}` `{"value": "..."}` rotates one secret; `DELETE` removes it."""
        agent = self.get_object()
        if request.method == "DELETE":
            with self.writing(request):
                if not agent_services.agent_secret_delete(agent=agent, name=secret_name):
                    raise NotFound(f"agent {agent.id!r} has no secret {secret_name!r}", type="secret_not_found")
            return self._out(agent)
        serializer = s.SecretValueIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        with self.writing(request):
            agent_services.agent_secret_set(agent=agent, name=secret_name, value=serializer.validated_data["value"])
        return self._out(agent)


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class EmbeddingModelViewSet(RegistryViewSet[EmbeddingModel]):
    """Embedding models of the memory orchestrator; `is_active: true` activates one."""

    queryset = EmbeddingModel.objects.all()
    lookup_field = "name"
    # One service call per write; outside a transaction it builds a new model's vector index
    # CONCURRENTLY, so memory writes are not blocked while it builds.
    atomic_writes = False
    input_serializer, output_serializer = s.EmbeddingModelIn, s.EmbeddingModelOut
    filter_fields = {"backend": ("backend", str), "is_active": ("is_active", bool)}
    search_fields = ["name"]
    ordering_fields = ["name", "dimensions"]

    def write(self, obj: EmbeddingModel | None, data: dict[str, Any]) -> EmbeddingModel:
        if obj is None:
            if EmbeddingModel.objects.filter(name=data["name"]).exists():
                raise Conflict(f"embedding model {data['name']!r} already exists", details={"name": data["name"]})
            return memory_services.embedding_model_save(**data)
        _refuse_rename(obj.name, data, "name")
        if data.get("is_active") is False and obj.is_active:
            raise ValidationFailed(
                "is_active: the active model cannot be deactivated; activate another model instead",
                details=[{"path": "is_active", "message": "activate another model instead"}],
            )
        return memory_services.embedding_model_save(
            name=obj.name,
            backend=data.get("backend", obj.backend),
            dimensions=data.get("dimensions", obj.dimensions),
            options=data.get("options", obj.options),
            is_active=data.get("is_active") or None,
        )

    def remove(self, obj: EmbeddingModel) -> None:
        memory_services.embedding_model_delete(name=obj.name)


@extend_schema_view(list=extend_schema(description=_LIST_DOC))
class ChangeRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The change log of the registries (read only): who changed which object, through which
    door, what changed. Secrets appear only as "(changed)"."""

    queryset = ChangeRecord.objects.all()
    serializer_class = s.ChangeRecordOut
    filter_fields = {
        "object_type": ("object_type", str),
        "object_id": ("object_id", str),
        "actor": ("actor", str),
        "source": ("source", str),
        "action": ("action", str),
    }
    search_fields = ["object_repr", "object_id", "actor"]
    ordering_fields = ["created_at", "id"]


class ApplyView(ChunkedBodyMixin, APIView):
    """POST a whole registry document (JSON or YAML); `?dry_run=1` returns the plan only."""

    parser_classes = [JSONParser, YAMLParser]

    def is_read_request(self, request: Request) -> bool:
        # A dry run changes nothing, so a read-only token may ask for the plan.
        return _flag(request, "dry_run", False)

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT, "application/yaml": OpenApiTypes.OBJECT},
        responses={200: s.PlanOut},
        parameters=[
            OpenApiParameter("dry_run", bool, description="check everything, change nothing, return the plan"),
            OpenApiParameter("prune", bool, description="delete objects a present section does not name (default true)"),
        ],
    )
    def post(self, request: Request) -> Response:
        dry_run = _flag(request, "dry_run", False)
        prune = _flag(request, "prune", True)
        with acting_as(actor_of(request), "api"):
            plan = registry_apply(document=request.data, dry_run=dry_run, prune=prune)
        return Response(plan.as_dict())


class ExportView(APIView):
    """GET the whole registry as a document (`Accept: application/yaml` or `?format=yaml`)."""

    renderer_classes = [JSONRenderer, YAMLRenderer, BrowsableAPIRenderer]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(registry_export())


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on", ""}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValidationFailed(
        f"query parameter {name}: must be true or false", details=[{"path": f"query.{name}", "message": "must be true or false"}]
    )
