"""MCP tools and prompts that apps other than toolcore serve through toolcore's /mcp.

The dependency rule has apps depend on `daarion`, not on each other: toolcore's MCP server
may not import apps.memory or apps.agents. An app that wants its functions on /mcp registers
them here in its AppConfig.ready() (`register_tool`, `register_prompts`), and the server asks
this module. Without such an app nothing is registered and /mcp serves toolcore's tools only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from daarion.infra.hooks import Hook


class McpToolError(Exception):
    """A refusal an extension tool's handler raises; the client reads `<error_type>: <message>`."""

    def __init__(self, message: str, *, error_type: str = "tool_error") -> None:
        super().__init__(message)
        self.error_type = error_type


# Called with keyword arguments agent_id (the acting agent), microdao_id (the caller's
# X-Microdao-Id, may be "") and arguments (validated against input_schema); returns a JSON
# object (the result's structuredContent). Scoped by construction: it is given the acting
# agent, never another. A DaarionError it raises is the caller's refusal, with its message.
McpToolHandler = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class McpTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    scope: str  # the service-token scope a caller needs to see and call it
    handler: McpToolHandler = field(repr=False, compare=False)
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False

    def spec(self) -> dict[str, Any]:
        """The tool in the MCP tools/list shape."""
        return {
            "name": self.name,
            "title": self.name,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": {
                "title": self.name,
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": self.idempotent,
                "openWorldHint": False,
            },
        }

    def argument_problems(self, arguments: Any) -> list[str]:
        if not isinstance(arguments, dict):
            return ["arguments must be a JSON object"]
        validator = Draft202012Validator(self.input_schema)
        return [
            f"$.{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
            if error.absolute_path
            else f"$: {error.message}"
            for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        ]


_tools: dict[str, McpTool] = {}


def register_tool(tool: McpTool) -> None:
    """Adds a tool, once per process (the same one again is a no-op)."""
    existing = _tools.get(tool.name)
    if existing is not None and existing.handler is not tool.handler:
        raise RuntimeError(f"MCP tool {tool.name!r} is registered already")
    _tools[tool.name] = tool


def tools() -> list[McpTool]:
    return sorted(_tools.values(), key=lambda t: t.name)


# Prompts: given the agents a caller may act for (None: any agent), their prompts in the MCP
# prompts/list shape; given those agents, a prompt name and its arguments, the prompts/get
# result (None: no such prompt for them).
PromptLister = Callable[[Collection[str] | None], Awaitable[list[dict[str, Any]]]]
PromptGetter = Callable[[Collection[str] | None, str, dict[str, str]], Awaitable[dict[str, Any] | None]]

prompt_lister: Hook[PromptLister] = Hook("an MCP prompt lister")
prompt_getter: Hook[PromptGetter] = Hook("an MCP prompt getter")


_prompt_configs: set[str] = set()


def register_prompts(lister: PromptLister, getter: PromptGetter, *, config: str | None = None) -> None:
    """`config`: the live-config name (daarion.infra.live_config) whose version moves when the
    prompts change, so /mcp can tell listening clients that the prompt list changed."""
    prompt_lister.register(lister)
    prompt_getter.register(getter)
    if config is not None:
        _prompt_configs.add(config)


def prompt_configs() -> list[str]:
    return sorted(_prompt_configs)


async def prompts_for(agent_ids: Collection[str] | None) -> list[dict[str, Any]]:
    return [] if prompt_lister.function is None else await prompt_lister.function(agent_ids)


async def prompt_get(agent_ids: Collection[str] | None, name: str, arguments: dict[str, str]) -> dict[str, Any] | None:
    return None if prompt_getter.function is None else await prompt_getter.function(agent_ids, name, arguments)
