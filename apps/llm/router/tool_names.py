"""Tool ids such as `projects.list` are not valid OpenAI function names: mapped reversibly
when tools are offered to a model, and calls mapped back."""

from __future__ import annotations

import re
from typing import Any

_VALID_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolNames:
    """Maps tool ids such as `projects.list` to valid function names and back."""

    def __init__(self, tools: list[dict[str, Any]] | None, messages: list[dict[str, Any]] | None = None) -> None:
        self.to_upstream: dict[str, str] = {}
        self.to_caller: dict[str, str] = {}
        # Names in the history's tool calls count too: a follow-up turn may offer no tools.
        history = [call for m in messages or [] for call in (m.get("tool_calls") or [])]
        for tool in [*(tools or []), *history]:
            name = str((tool.get("function") or {}).get("name", ""))
            if not name or name in self.to_upstream:
                continue
            mapped = name if _VALID_TOOL_NAME.match(name) else re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "tool"
            base, n = mapped, 2
            while mapped in self.to_caller and self.to_caller[mapped] != name:
                suffix = f"_{n}"
                mapped, n = base[: 64 - len(suffix)] + suffix, n + 1
            self.to_upstream[name], self.to_caller[mapped] = mapped, name

    @property
    def identity(self) -> bool:
        return all(k == v for k, v in self.to_upstream.items())

    def tools(self, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if not tools or self.identity:
            return tools
        out = []
        for tool in tools:
            function = dict(tool.get("function") or {})
            function["name"] = self.to_upstream.get(function.get("name", ""), function.get("name", ""))
            out.append({**tool, "function": function})
        return out

    def tool_choice(self, choice: Any) -> Any:
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and not self.identity:
            name = choice["function"].get("name", "")
            return {**choice, "function": {**choice["function"], "name": self.to_upstream.get(name, name)}}
        return choice

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.identity:
            return messages
        out = []
        for message in messages:
            if message.get("tool_calls"):
                calls = []
                for call in message["tool_calls"]:
                    function = dict(call.get("function") or {})
                    function["name"] = self.to_upstream.get(function.get("name", ""), function.get("name", ""))
                    calls.append({**call, "function": function})
                message = {**message, "tool_calls": calls}
            out.append(message)
        return out

    def back(self, name: str) -> str:
        return self.to_caller.get(name, name)
