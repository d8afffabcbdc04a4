"""Sliding-window counters in Redis, shared by the LLM proxy's rate limits and toolcore's
per-tool limits.

Counts are kept per fixed window (a calendar minute for both), and a check adds the previous
window's count weighted by the share of it still inside the last window-length of time:
`used = current + previous * (ms left of the current window / window ms)`. A plain fixed
window lets a full budget through at 12:00:59 and a second one at 12:01:00; this keeps any
window-long span near one budget, at the cost of one more GET per limit. The weighting assumes
the previous window's calls were spread evenly (the usual sliding-window-counter trade-off
against keeping every call's timestamp).

Each window's counter must outlive its window by one more: it is the next one's previous count
(`expire_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass

from daarion.infra.redis_client import lua_source

# A call fits when floor(used) + its cost <= the limit: the fractional part of the previous
# window's share is let go, so a small limit is never stricter than a fixed window would be
# (a 1/min limit still takes its next call as the minute turns), while a large one is smoothed.
#
# The Lua functions `sliding_count` and `sliding_wait_ms` (sliding_window.lua), prefixed to the
# scripts that check a sliding count: the LLM rate limits' and toolcore's per-tool limit.
SLIDING_LUA = lua_source(__file__, "sliding_window.lua")

# Slack on a counter's expiry, so a check at the very end of the next window still finds it.
_EXPIRY_SLACK_MS = 5000


@dataclass(frozen=True)
class Window:
    """Where `now_ms` falls among windows of `length_ms`."""

    index: int  # the current window's number (keys name it); the previous one is index - 1
    reset_ms: int  # ms left of the current window
    length_ms: int

    @classmethod
    def at(cls, now_ms: int, length_ms: int) -> Window:
        index = now_ms // length_ms
        return cls(index=index, reset_ms=(index + 1) * length_ms - now_ms, length_ms=length_ms)

    @property
    def expire_ms(self) -> int:
        """How long a counter of the current window must live (through the next window)."""
        return self.reset_ms + self.length_ms + _EXPIRY_SLACK_MS

    @property
    def drained_ms(self) -> int:
        """ms until counts taken now have slid out entirely (the end of the next window)."""
        return self.reset_ms + self.length_ms
