"""Typed configs from YAML mappings: the one builder of every recsys_spark config dataclass.

A value YAML (or a `key=value` override) got wrong is named with its section and key before anything runs:
unknown keys, a section that is not a mapping, and scalars of the wrong type (`als.rank=abc`, `als.name=5`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from recsys_spark.errors import RecsysError

T = TypeVar("T")

# Annotation name -> accepted Python types. bool is an int in Python but never a count or a rate here.
_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                                         "None": (type(None),)}


def _type_error(annotation: Any, value: Any) -> str | None:
    """Why `value` does not fit the annotation (`int`, `float | None`, ...); None if it fits or the annotation
    is not a plain scalar union (nested configs, lists: their own checks apply)."""
    annotation = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    names = [part.strip() for part in annotation.split("|")]
    if not all(name in _SCALARS for name in names):
        return None
    if isinstance(value, bool) and "bool" not in names:
        return f"must be {annotation}, got {value!r}"
    if any(isinstance(value, _SCALARS[name]) for name in names):
        return None
    return f"must be {annotation}, got {value!r}"


def from_mapping(cls: type[T], values: Any, where: str) -> T:
    """`cls(**values)` for a dataclass, with every user error raised as one RecsysError naming `where.key`."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecsysError(f"{where} config must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RecsysError(f"{where} config: unknown keys {unknown}; known: {sorted(fields)}")
    for key, value in values.items():
        problem = _type_error(fields[key].type, value)
        if problem:
            raise RecsysError(f"{where}.{key} {problem}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise RecsysError(f"{where} config: {exc}") from None
