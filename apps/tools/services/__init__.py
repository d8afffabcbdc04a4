"""Writes and rules of toolcore, one validation path for admin, registry API and documents.

One module per concern: `validation` (the clean_* functions, `tool_validate`,
`mcp_server_validate`, the changes a caller asks for with write-only secret headers merged;
the names of those headers), `tools` (saving tools through model_update, each change a new
version; the `tools:` export), `calls` (the tool call: its checks, execution, secret
scrubbing and audit), `mcp_servers` (upstream MCP servers and the sync of their tools).
Other modules import from here only.
"""

from apps.tools.services.calls import ToolCallOutcome, tool_call, tool_call_refused
from apps.tools.services.mcp_servers import (
    MCP_SERVER_FIELDS,
    mcp_server_create,
    mcp_server_delete,
    mcp_server_sync,
    mcp_server_update,
    mcp_servers_export,
)
from apps.tools.services.tools import (
    TOOL_FIELDS,
    tool_create,
    tool_delete,
    tool_update,
    tools_export,
    tools_forget_agent,
)
from apps.tools.services.validation import (
    clean_secret_headers,
    mcp_server_validate,
    secret_header_names,
    secret_headers_of,
    tool_validate,
)

__all__ = [
    "MCP_SERVER_FIELDS",
    "TOOL_FIELDS",
    "ToolCallOutcome",
    "clean_secret_headers",
    "mcp_server_create",
    "mcp_server_delete",
    "mcp_server_sync",
    "mcp_server_update",
    "mcp_server_validate",
    "mcp_servers_export",
    "secret_header_names",
    "secret_headers_of",
    "tool_call",
    "tool_call_refused",
    "tool_create",
    "tool_delete",
    "tool_update",
    "tool_validate",
    "tools_export",
    "tools_forget_agent",
]
