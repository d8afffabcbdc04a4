"""A function one app provides, at start-up, to apps that must not import it: the dependency
rule has apps depend on `daarion`, not on each other, so the provider registers the function
here in its AppConfig.ready() and the users call it through `daarion`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Hook(Generic[F]):
    """Holds the one registered function (None until an app registers it)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.function: F | None = None

    def register(self, function: F) -> None:
        """Sets the function, once per process (registering the same one again is a no-op)."""
        if self.function is not None and self.function is not function:
            raise RuntimeError(f"{self.what} is registered already: {self.function!r}")
        self.function = function
