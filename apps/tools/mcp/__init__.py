"""Toolcore as an MCP gateway.

- `server`: the MCP server at /mcp, on the official SDK's low-level `Server` (tools, prompts).
- `gateway`: the ASGI app daarion/asgi.py mounts at /mcp: auth, acting agent, Origin rule,
  then the SDK's stateless streamable HTTP session manager.
- `upstream`: the SDK client for upstream MCP servers (sync and the `mcp` executor), under the
  same egress rules as the http executor.
"""
