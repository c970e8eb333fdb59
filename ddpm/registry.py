"""A tiny name -> factory registry; one instance per config group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A config value is unknown or invalid; raised before any training starts."""


class Registry:
    """Maps the option name used on the command line to the object that implements it."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            if name in self._entries:
                raise KeyError(f"{self.group!r} already has an entry named {name!r}")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.group} {name!r}; valid options: {', '.join(self.names())}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
