"""Typed configs from YAML mappings: the one builder of every config dataclass on the Spark and jobs side.

A config is a dataclass; `from_mapping(cls, values, "section")` builds it and names any value YAML (or a `key=value`
override) got wrong with its section and key before anything runs: unknown keys, a section that is not a mapping,
scalars of the wrong type (`als.rank=abc`, `als.name=5`), lists of the wrong element type, and the same inside
nested sections (`etl.kcore.min_user_interactions`). A single value where a list is expected is a list of one.
Value ranges are the dataclass's own `__post_init__` checks, raising RecsysError with the same `section.key`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from recsys_spark.errors import RecsysError

T = TypeVar("T")

_SCALARS = (bool, int, float, str)


def from_mapping(cls: type[T], values: Any, where: str) -> T:
    """`cls(**values)` for a dataclass, with every user error raised as one RecsysError naming `where.key`."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecsysError(f"{where} must be a mapping, got {values!r}")
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise RecsysError(f"{where} config: unknown keys {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _convert(hints[key], value, f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecsysError(f"{where} config: {exc}") from None


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return "None" if annotation is type(None) else annotation.__name__
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_describe(a) for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "")


def _fits(annotation: Any, value: Any) -> bool:
    """Whether a scalar fits a scalar annotation. bool is an int in Python but never a count or a rate here."""
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _convert(annotation: Any, value: Any, where: str) -> Any:
    """`value` checked against `annotation` (and nested configs built); raises RecsysError naming `where`."""
    if dataclasses.is_dataclass(annotation):
        return from_mapping(annotation, value, where)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if all(a in _SCALARS for a in others):
            if not any(_fits(a, value) for a in others):
                raise RecsysError(f"{where} must be {_describe(annotation)}, got {value!r}")
            return value
        if len(others) == 1:  # `tuple[str, ...] | None`, `SomeConfig | None`: the inner check names the problem
            return _convert(others[0], value, where)
        return value
    if origin in (list, tuple):
        element = args[0] if args else Any
        if not isinstance(value, (list, tuple)):
            if element in _SCALARS and _fits(element, value):
                value = [value]
            else:
                raise RecsysError(f"{where} must be a list of {_describe(element)}, got {value!r}")
        items = [_convert(element, item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise RecsysError(f"{where} must be a mapping, got {value!r}")
        return value
    if annotation in _SCALARS and not _fits(annotation, value):
        raise RecsysError(f"{where} must be {_describe(annotation)}, got {value!r}")
    return value
