"""Config schemas: the keys an option takes, with their types and ranges.

An option declares its keys once, as the keyword-only parameters of its registered function
or class (or the fields of a dataclass), annotated with a type and, where it has one, a
range or a set of choices:

    def linear(timesteps: int, *, beta_start: Beta, beta_end: Beta, scale_to_T: bool): ...

The values themselves live in the option's YAML file only; Python restates no default.
`check_section` checks a config section against such a declaration before anything runs:
unknown and missing keys, types (OmegaConf converts and checks them, from a structured
config built out of the declaration), then ranges and choices.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm.config.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Bounds on a number, or on every number of a list."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violation(self, value: Any) -> str | None:
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                continue
            if isinstance(v, float) and not math.isfinite(v):
                return "must be a finite number"
            if not self._holds(v):
                return "must be " + self.describe()
        return None

    def _holds(self, v: float) -> bool:
        return not (
            (self.ge is not None and v < self.ge)
            or (self.gt is not None and v <= self.gt)
            or (self.le is not None and v > self.le)
            or (self.lt is not None and v >= self.lt)
        )

    def describe(self) -> str:
        bounds = {">=": self.ge, ">": self.gt, "<=": self.le, "<": self.lt}
        return " and ".join(f"{op} {b:g}" for op, b in bounds.items() if b is not None)


@dataclass(frozen=True)
class OneOf:
    """A string out of a fixed set."""

    choices: tuple[str, ...]

    def violation(self, value: Any) -> str | None:
        if value is None or value in self.choices:
            return None
        return "must be " + self.describe()

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))


@dataclass(frozen=True)
class Length:
    """A list of exactly n items (or at least n with `at_least`)."""

    n: int
    at_least: bool = False

    def violation(self, value: Any) -> str | None:
        if value is None or len(value) == self.n or (self.at_least and len(value) > self.n):
            return None
        return f"must have {'at least ' if self.at_least else ''}{self.n} item(s)"


# The constrained types that recur across the config groups.
PositiveInt = Annotated[int, Range(gt=0)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Probability = Annotated[float, Range(ge=0, le=1)]
Decay = Annotated[float, Range(ge=0, lt=1)]  # EMA and Adam decays: 1 would never move


@dataclass(frozen=True)
class Key:
    """One config key: the type OmegaConf checks, and the constraints on its value."""

    name: str
    type: Any
    constraints: tuple[Any, ...] = ()

    def describe(self) -> str:
        limits = [c.describe() for c in self.constraints if isinstance(c, Range)]
        limits += [c.describe() for c in self.constraints if isinstance(c, OneOf)]
        return _type_name(self.type) + (f" ({', '.join(limits)})" if limits else "")


def keys_of(declaration: Any) -> dict[str, Key]:
    """The keys a dataclass declares (its fields), or a callable (its keyword-only params)."""
    hints = typing.get_type_hints(
        declaration if dataclasses.is_dataclass(declaration) else _callable(declaration),
        include_extras=True,
    )
    if dataclasses.is_dataclass(declaration):
        names = [f.name for f in dataclasses.fields(declaration)]
    else:
        params = inspect.signature(declaration).parameters.values()
        names = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return {name: _key(name, hints[name]) for name in names}


def _callable(obj: Any) -> Any:
    return obj.__init__ if inspect.isclass(obj) else obj


def _key(name: str, hint: Any) -> Key:
    constraints: tuple[Any, ...] = ()
    if typing.get_origin(hint) is Annotated:
        hint, *extra = typing.get_args(hint)
        constraints = tuple(extra)
    if isinstance(hint, types.UnionType):  # `int | None`, in the form OmegaConf reads
        hint = typing.Union[typing.get_args(hint)]  # noqa: UP007
    return Key(name, hint, constraints)


def check_section(
    section: Mapping[str, Any], keys: Mapping[str, Key], prefix: str, owner: str
) -> dict[str, Any]:
    """The section's values, converted to the declared types; ConfigError names what is wrong.

    `prefix` is the section's path in the config (`loss`), `owner` names what takes the keys
    in the messages (`loss 'mse'`).
    """
    accepted = ", ".join(keys) or "none"
    for name in section:
        if name not in keys:
            raise ConfigError(
                f"{_path(prefix, name)}: {owner} does not take this key; it takes: {accepted}"
            )
    missing = [_path(prefix, name) for name in keys if name not in section]
    if missing:
        raise ConfigError(f"{owner} needs {', '.join(missing)}; it takes: {accepted}")
    values = {name: _typed(section[name], keys[name], _path(prefix, name)) for name in keys}
    for name, key in keys.items():
        for constraint in key.constraints:
            problem = constraint.violation(values[name])
            if problem:
                raise ConfigError(f"{_path(prefix, name)}={values[name]!r}: {problem}")
    return values


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _typed(value: Any, key: Key, path: str) -> Any:
    """The value converted to the key's type by an OmegaConf structured config."""
    schema = dataclasses.make_dataclass("schema", [(key.name, key.type, MISSING)])
    try:
        node = OmegaConf.merge(OmegaConf.structured(schema), {key.name: value})
        return OmegaConf.to_container(node)[key.name]
    except OmegaConfBaseException as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"{path}={value!r}: expected {key.describe()} ({reason})") from None


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args) + " or null"
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return getattr(tp, "__name__", str(tp))
