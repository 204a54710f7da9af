"""Strict parsing of plain data (TOML, JSON) into dataclasses: the config (assistant/config.py), bundle
manifests (assistant/bundle.py) and bridge checkpoints (assistant/engine/checkpoint.py) all read through it.

A key the dataclass has no field for is refused, a field without a default must be given, and every value
must have its field's annotated type: an int where a float is wanted becomes that float, a list where a
tuple is wanted that tuple, and a dataclass-typed field is read from a table the same way, recursively.
Each error names the exact key, dotted from the top (``alignment.max_steps``, ``prompt.response``), and is
raised as the caller's error class. Checks that relate values belong to each dataclass's ``__post_init__``.

Standard library only: the CLI reads configs and manifests without importing numpy or torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

from assistant.errors import AssistantError, ConfigError

T = TypeVar("T")
_NONE = type(None)


def from_dict(cls: type[T], data: Any, where: str = "", *, error: type[AssistantError] = ConfigError,
              noun: str = "key", source: str = "") -> T:
    """``cls(**data)``, once every key and value of ``data`` is checked against ``cls``'s fields.

    ``where``: the dotted key ``data`` sits under ("": the top); ``error``: the class raised; ``noun``:
    what the messages call a key ("config key", "manifest key"); ``source``: the file, named in every
    message ("": none).
    """
    return _Reader(error, noun, source).dataclass(cls, data, where)


class _WrongType(Exception):
    """A value is not of the type wanted; the field that holds it turns this into the caller's error."""


class _Reader:
    def __init__(self, error: type[AssistantError], noun: str, source: str) -> None:
        self.error, self.noun, self.source = error, noun, source

    def _in(self) -> str:
        return f" in {self.source}" if self.source else ""

    def dataclass(self, cls: type[T], data: Any, where: str) -> T:
        if not isinstance(data, dict):
            raise self.error(f"{self.noun} {where or '(the top level)'}{self._in()} must be a table, "
                             f"got {type(data).__name__} {data!r}")
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            full = f"{where}.{key}" if where else str(key)
            if key not in known:
                raise self.error(f"unknown {self.noun} {full}{self._in()}; allowed here: {', '.join(sorted(known))}")
            try:
                kwargs[key] = self.value(hints[key], value, full)
            except _WrongType:
                raise self.error(f"{self.noun} {full}{self._in()} must be {_describe(hints[key])}, "
                                 f"got {type(value).__name__} {value!r}") from None
        for name, f in known.items():
            if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.error(f"{self.noun} {where + '.' if where else ''}{name} is missing{self._in()}")
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a __post_init__ that met a value it cannot compare
            raise self.error(f"{self.noun}s under {where or '(the top level)'}{self._in()}: {exc}") from exc

    def value(self, tp: Any, value: Any, key: str) -> Any:
        if tp is Any:
            return value
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise _WrongType
            return self.dataclass(tp, value, key)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (Union, types.UnionType):
            if value is None and _NONE in args:
                return None
            for arm in args:
                if arm is not _NONE:
                    try:
                        return self.value(arm, value, key)
                    except _WrongType:
                        pass
            raise _WrongType
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise _WrongType
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.value(args[0], v, key) for v in value)
            if len(args) != len(value):
                raise _WrongType
            return tuple(self.value(a, v, key) for a, v in zip(args, value))
        if origin is list or tp is list:
            if not isinstance(value, list):
                raise _WrongType
            return [self.value(args[0], v, key) for v in value] if args else list(value)
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise _WrongType
            kt, vt = args or (Any, Any)
            return {self.value(kt, k, key): self.value(vt, v, key) for k, v in value.items()}
        if tp is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise _WrongType
        if tp is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise _WrongType
        if tp in (bool, str, _NONE):
            if isinstance(value, tp):
                return value
            raise _WrongType
        raise TypeError(f"assistant.strict cannot check values of type {tp!r} (key {key})")


def _describe(tp: Any) -> str:
    """The type as a message names it: int, float, a list of str, str or null, a table."""
    if tp is Any:
        return "any value"
    if dataclasses.is_dataclass(tp):
        return "a table"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list) or tp in (tuple, list):
        inner = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else None
        return f"a list of {_describe(inner)}" if inner is not None and inner is not Any else "a list"
    if origin is dict or tp is dict:
        return "a table"
    if tp is _NONE:
        return "null"
    return getattr(tp, "__name__", str(tp))
