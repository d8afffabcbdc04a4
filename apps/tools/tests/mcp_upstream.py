"""A reference upstream MCP server built with the SDK's own server API (MCPServer, formerly
FastMCP), run as a real process by the tests and the bench:

    python -m apps.tools.tests.mcp_upstream --port 8123 [--without forecast] [--stateless]

Tools: forecast (structured output, read-only), add, fail (always an error result), whoami
(echoes the X-Api-Key header it received, to show which secret headers reach the upstream).
"""

from __future__ import annotations

import argparse
import hashlib

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel


class Forecast(BaseModel):
    city: str
    temp_c: float
    summary: str


def build(without: set[str]) -> MCPServer:
    server = MCPServer("reference-upstream")

    if "forecast" not in without:

        @server.tool(title="Weather forecast", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
        def forecast(city: str) -> Forecast:
            """Tomorrow's weather in a city."""
            return Forecast(city=city, temp_c=21.5, summary=f"sunny in {city}")

    if "add" not in without:

        @server.tool()
        def add(a: int, b: int) -> int:
            """The sum of two integers."""
            return a + b

    if "fail" not in without:

        @server.tool()
        def fail(reason: str = "broken on purpose") -> str:
            """Always fails."""
            raise ToolError(reason)

    if "whoami" not in without:

        @server.tool()
        def whoami(ctx: Context) -> dict:
            """A digest of the X-Api-Key header this call came with (toolcore redacts the key
            itself from whatever an upstream sends back)."""
            request = ctx.request_context.request
            value = request.headers.get("x-api-key", "") if request is not None else ""
            return {"api_key_sha256": hashlib.sha256(value.encode()).hexdigest()}

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--without", action="append", default=[])
    parser.add_argument("--stateless", action="store_true")
    args = parser.parse_args()
    build(set(args.without)).run(
        "streamable-http", host="127.0.0.1", port=args.port, stateless_http=args.stateless, json_response=args.stateless
    )


if __name__ == "__main__":
    main()
