"""The registry document's shape as pydantic models: what each section may hold, of which type.

Only the shape lives here (keys, types, defaults); the owning apps' services keep every rule
about values (URLs, JSON schemas, fallbacks, known agents), so a rule cannot differ between the
document, the registry API and the admin. Tool, agent and MCP server fields the services check
are typed `Any` for that reason. Validation errors become `{path, message}` details in
`documents/parse.py`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

SECTIONS = ("providers", "models", "rate_limits", "tools", "agents", "mcp_servers")


def _number() -> Any:
    """A price: a number or a numeric string (Decimal, as the service stores it); every other
    field is strict (no "5" for 5, no 1 for true)."""
    return Field(default=None, strict=False)


class Part(BaseModel):
    """A mapping of the document: refuses anything else, and unknown keys with the allowed ones."""

    model_config = ConfigDict(strict=True, extra="ignore", protected_namespaces=())
    # Keys this part takes besides its fields (none by default).
    extra_keys: ClassVar[frozenset[str]] = frozenset()
    # A part that ignores keys it does not know rather than refusing them.
    open: ClassVar[bool] = False
    # A part that may be written as null (`name:` with nothing after it) for all defaults.
    null_is_empty: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if data is None and cls.null_is_empty:
            data = {}
        if not isinstance(data, dict):
            raise PydanticCustomError("mapping", "expected a mapping, got {kind}", {"kind": type(data).__name__})
        if not cls.open:
            allowed = {*cls.model_fields, *cls.extra_keys}
            unknown = sorted({str(k) for k in data} - allowed)
            if unknown:
                raise PydanticCustomError(
                    "unknown_keys",
                    "unknown key(s) {unknown}; allowed: {allowed}",
                    {"unknown": str(unknown), "allowed": str(sorted(allowed))},
                )
        return data


def _required_id(value: Any, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("required_id", "required ({example})", {"example": example})
    return value


class Secret(Part):
    """A secret: a literal (`"sk-..."` or `{value: ...}`) or `{env: VAR}`, which the import
    command resolves from its environment and elsewhere only means "keep the stored one"."""

    value: str | None = None
    env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _literal(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"value": data}
        if isinstance(data, dict) and len(data) != 1 and set(data) <= {"env", "value"}:
            raise PydanticCustomError("secret", "give either env or value")
        return data


class ProviderDoc(Part):
    null_is_empty: ClassVar[bool] = True
    kind: str | None = None  # none: a provider named after a kind is that kind
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    timeout: float = 60.0  # the seed's spelling of timeout_seconds
    timeout_seconds: float = 60.0
    max_retries: int = 2
    extra_headers: dict[str, Any] | None = None
    enabled: bool = True


class DeploymentDoc(Part):
    provider: str
    name: str | None = None  # the upstream model; none: the logical model's name
    weight: int = 1
    rpm: int | None = None
    tpm: int | None = None
    enabled: bool = True


class Price(Part):
    open: ClassVar[bool] = True
    input: Decimal | None = _number()
    output: Decimal | None = _number()


class ModelDoc(Part):
    """A logical model: one deployment in short (`provider`, `name`, `weight`, `rpm`, `tpm`)
    or a `deployments` list, never both."""

    null_is_empty: ClassVar[bool] = True

    provider: str | None = None
    name: str | None = None
    weight: int = 1
    rpm: int | None = None
    tpm: int | None = None
    deployments: list[DeploymentDoc] | None = None
    fallbacks: list[Any] | None = None
    context_window: int = 8192
    price: Price | None = None
    input_price_per_mtok: Decimal | None = _number()
    output_price_per_mtok: Decimal | None = _number()
    can_embed: bool = False
    drop_unsupported_params: bool = False
    enabled: bool = True
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_way_to_deploy(cls, data: Any) -> Any:
        if data is None or isinstance(data, dict):
            data = data or {}
            if "deployments" in data and "provider" in data:
                raise PydanticCustomError("deployments", "give either provider/name or deployments, not both")
            if "deployments" not in data and "provider" not in data:
                raise PydanticCustomError("deployments", "needs a provider (or a deployments list)")
        return data


class PolicyDoc(Part):
    scope: str = "default"
    subject: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_usd: Any = None  # checked by the service's rule (its words) in parse.py
    budget_period: str | None = None
    enabled: bool = True


class Annotations(Part):
    read_only: Any = None
    destructive: Any = None
    idempotent: Any = None


class ToolDoc(Part):
    """A tool of `tools:` (an `import_tools` item). Its fields are the tool service's to check."""

    id: Any = Field(default=None, validate_default=True)
    name: Any = ""
    description: Any = ""
    input_schema: Any = Field(default_factory=dict)
    output_schema: Any = None
    executor: Any = ""
    target: Any = ""
    allowed_agents: Any = None
    timeout: Any = 10.0
    enabled: Any = True
    read_only: Any = False
    destructive: Any = False
    idempotent: Any = False
    rate_limit_per_minute: Any = None
    agent_secret_headers: Any = None  # {header: agent secret name}: names only
    annotations: Annotations | None = None  # MCP's spelling of read_only/destructive/idempotent
    secrets: dict[str, Secret] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        return _required_id(value, "a string like projects.list")


class McpServerDoc(Part):
    """An upstream MCP server; the tools its sync adds are its own, not the `tools:` section's."""

    name: Any = Field(default=None, validate_default=True)
    url: Any
    transport: Any = "streamable_http"
    prefix: Any = None  # none: the server's name
    description: Any = ""
    allowed_agents: Any = None
    timeout: Any = 30.0
    enabled: Any = True
    agent_secret_headers: Any = None
    headers: dict[str, Secret] | None = None  # secret headers

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        return _required_id(value, "a name like weather")


class AgentDoc(Part):
    """An agent blueprint; its fields are the agent service's to check."""

    id: Any = Field(default=None, validate_default=True)
    name: Any
    microdao_id: Any
    model: Any
    enabled: Any = True
    system_prompt: Any = ""
    character: Any = Field(default_factory=dict)
    memory_recall_limit: Any = 5
    memory_kinds: Any = Field(default_factory=list)
    max_tool_steps: Any = 4
    tool_mode: Any = "native"
    temperature: Any = None
    history_turns: Any = 10
    history_tokens: Any = 4000
    secrets: dict[str, Secret] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        return _required_id(value, "an id like agent:sofia")


class Document(Part):
    """A whole registry document. A section present (even empty) is the whole truth about its
    objects; a section left out is left alone."""

    providers: dict[str, ProviderDoc] | None = None
    models: dict[str, ModelDoc] | None = None
    rate_limits: list[PolicyDoc] | None = None
    tools: list[ToolDoc] | None = None
    agents: list[AgentDoc] | None = None
    mcp_servers: list[McpServerDoc] | None = None
