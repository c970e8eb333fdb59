"""One registry per config group; every option of every group goes through the same door.

An option is a registered function or class whose keyword-only parameters are the keys of
its config section (`ddpm.config.schema`). A group may also declare keys that all its options
share (a dataclass), which the group's own code reads. `Registry.resolve(section)` checks a
section against both and returns the chosen `Option`, ready to call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ddpm.config.errors import ConfigError
from ddpm.config.schema import Key, check_section, keys_of

__all__ = ["ConfigError", "Option", "Registry"]


@dataclass(frozen=True)
class Option:
    """A checked config section: the registered entry, its own keys, the group's shared keys."""

    group: str
    name: str
    entry: Any
    params: dict[str, Any]  # the entry's keyword-only parameters
    shared: Any = None  # an instance of the group's shared dataclass, if it has one

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The entry, given the wiring arguments and its own keys."""
        return self.entry(*args, **kwargs, **self.params)


class Registry:
    """Maps the option name used on the command line to the object that implements it."""

    def __init__(self, group: str, shared: type | None = None) -> None:
        self.group = group
        self.shared = shared
        self._entries: dict[str, Any] = {}
        self._schemas: dict[str, Any] = {}

    def register(self, name: str, schema: Any = None) -> Callable[[Any], Any]:
        """Decorator; the option's keys come from `schema` (a dataclass) or the entry itself."""

        def decorator(obj: Any) -> Any:
            if name in self._entries:
                raise KeyError(f"{self.group!r} already has an entry named {name!r}")
            self._entries[name] = obj
            self._schemas[name] = obj if schema is None else schema
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

    def own_keys(self, name: str) -> dict[str, Key]:
        """The keys option `name` itself takes (besides `name` and the shared ones)."""
        self.get(name)
        return keys_of(self._schemas[name])

    def shared_keys(self) -> dict[str, Key]:
        return keys_of(self.shared) if self.shared is not None else {}

    def resolve(self, section: Mapping[str, Any], prefix: str | None = None) -> Option:
        """Check a section {name, shared keys, the option's keys}; ConfigError if it is off."""
        prefix = prefix or self.group
        if "name" not in section:
            raise ConfigError(f"{prefix}.name is missing; valid: {', '.join(self.names())}")
        name = str(section["name"])
        entry = self.get(name)
        shared_keys, own = self.shared_keys(), self.own_keys(name)
        keys = {**shared_keys, **own}
        rest = {k: v for k, v in section.items() if k != "name"}
        values = check_section(rest, keys, prefix, f"{self.group} {name!r}")
        shared = self.shared(**{k: values[k] for k in shared_keys}) if self.shared else None
        return Option(self.group, name, entry, {k: values[k] for k in own}, shared)
