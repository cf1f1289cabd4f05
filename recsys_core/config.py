"""Typed configs from YAML mappings: the one builder and the one validation style of every config section.

A config is a dataclass; `build(cls, values, "section")` makes it and names any value YAML (or a `key=value`
override) got wrong with its section and key before anything runs: unknown keys, a section that is not a mapping,
scalars of the wrong type (`als.rank=abc`, `als.name=5`), lists of the wrong element type, and the same inside
nested sections (`etl.kcore.min_user_interactions`). A single value where a list is expected is a list of one.

A config class derives from `Config` and declares the rule of a field beside it,

    rank: int = checked(64, POSITIVE)                 # "als.rank must be a positive integer, got 0"
    warmup: float = checked(0.05, number_in(0, 1, high_open=True))

checked on every construction (by `build` or in code) with the same message shape: `<section>.<key> must be <rule>,
got <value>` (`null or <rule>` where the field may be null). Rules across fields go in the class's `validate()`.
Every error is a ConfigError (a RecsysError: one line, exit 2).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

from recsys_core.errors import ConfigError

T = TypeVar("T")

_SCALARS = (bool, int, float, str)
_RULE = "recsys_rule"  # the dataclass field metadata key of a field's rule
_LABEL = "recsys_label"  # ... and of the name a message gives the field, where it is not `section.key`


@dataclass(frozen=True)
class Rule:
    """What a field's value must be: `ok(value)` on a value of the field's type, `text` says it to the user."""

    ok: Callable[[Any], bool]
    text: str


POSITIVE = Rule(lambda v: v >= 1, "a positive integer")
NON_NEGATIVE = Rule(lambda v: v >= 0, "an integer >= 0")
BOOLEAN = Rule(lambda v: True, "true or false")


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f"a number >= {low:g}")


def above(low: float) -> Rule:
    return Rule(lambda v: v > low, f"a number > {low:g}")


def number_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """A number in [low, high], either end open: `number_in(0, 1, high_open=True)` is [0, 1)."""
    text = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Rule(lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high),
                f"a number in {text}")


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, f"one of {', '.join(choices)}")


def checked(default: Any = dataclasses.MISSING, rule: Rule | None = None, *, label: str | None = None,
            **kwargs) -> Any:
    """A dataclass field with a default and the rule its value must follow; `label` names the field in messages
    where the user set it some other way than `section.key` (a command-line flag: `--users`)."""
    metadata = {_RULE: rule} if rule else {}
    if label:
        metadata[_LABEL] = label
    return field(default=default, metadata=metadata, **kwargs)


class Config:
    """Base of every config dataclass: `section` is its place in the resolved config ("als", "baselines.genre")."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        check_rules(self, self.section)
        self.validate()

    def validate(self) -> None:
        """Rules across fields (a subclass's own); raise ConfigError naming `section.key`."""

    @classmethod
    def from_dict(cls: type[T], values: Any) -> T:
        return build(cls, values, cls.section)


def build(cls: type[T], values: Any, where: str) -> T:
    """`cls(**values)` for a dataclass, with every user error raised as one ConfigError naming `where.key`."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"the {where} config section must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown_keys(values, fields, where)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        rule = fields[key].metadata.get(_RULE)
        try:
            kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
        except ConfigError:
            if rule is None:
                raise
            _fail(f"{where}.{key}", hints[key], rule, value)  # the rule says the type too ("a positive integer")
        if rule is not None:  # here too, not only on construction: `where` may be more than the class's section
            _check(f"{where}.{key}", hints[key], rule, kwargs[key])
    missing = [key for key, f in fields.items() if key not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{', '.join(f'{where}.{key}' for key in missing)}: required, and not given")
    return cls(**kwargs)


def check_value(name: str, value: Any, rule: Rule, annotation: Any = int) -> Any:
    """A value given outside a config section (a flag, a function's argument) checked by the same rules, with the
    same message: `check_value("--k", 0, POSITIVE)` raises "--k must be a positive integer, got 0"."""
    _check(name, annotation, rule, value)
    return value


def check_rules(config: Any, where: str) -> None:
    """Every field's declared rule (type included) on the values of `config`."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        rule = f.metadata.get(_RULE)
        if rule is not None:
            name = f.metadata.get(_LABEL) or (f"{where}.{f.name}" if where else f.name)
            _check(name, hints[f.name], rule, getattr(config, f.name))


def _check(where: str, annotation: Any, rule: Rule, value: Any) -> None:
    if value is None and _allows_none(annotation):
        return
    if not (_fits_scalar(annotation, value) and rule.ok(value)):
        _fail(where, annotation, rule, value)


def _fail(where: str, annotation: Any, rule: Rule, value: Any) -> typing.NoReturn:
    prefix = "null or " if _allows_none(annotation) else ""
    raise ConfigError(f"{where} must be {prefix}{rule.text}, got {value!r}")


def _allows_none(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _fits_scalar(annotation: Any, value: Any) -> bool:
    """Whether `value` fits a scalar annotation (or one of a union's scalars); other annotations always fit."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
    else:
        options = [annotation]
    if not all(a in _SCALARS for a in options):
        return True
    return any(_fits(a, value) for a in options)


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
    """`value` checked against `annotation` (and nested configs built); raises ConfigError naming `where`."""
    if dataclasses.is_dataclass(annotation):
        return build(annotation, value, where)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if all(a in _SCALARS for a in others):
            if not any(_fits(a, value) for a in others):
                raise ConfigError(f"{where} must be {_describe(annotation)}, got {value!r}")
            return value
        if len(others) == 1:  # `tuple[str, ...] | None`, `SomeConfig | None`: the inner check names the problem
            return _convert(others[0], value, where)
        return value
    if origin in (list, tuple) or annotation in (list, tuple):
        element = args[0] if args else Any
        if not isinstance(value, (list, tuple)):
            if element in _SCALARS and _fits(element, value):
                value = [value]
            else:
                raise ConfigError(f"{where} must be a list of {_describe(element)}, got {value!r}")
        items = [_convert(element, item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if (origin or annotation) is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return value
    if annotation in _SCALARS and not _fits(annotation, value):
        raise ConfigError(f"{where} must be {_describe(annotation)}, got {value!r}")
    return value


def unknown_keys(values: dict, known: typing.Iterable[str], where: str) -> None:
    """The one unknown-key check: of a config's mapping (in `build`), or of a mapping with a fixed set of keys."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(f'{where}.{key}' for key in unknown)}; known keys of "
                          f"{where}: {', '.join(sorted(known))}")
