"""Declarations of what a setting may be, read from annotations: the one mechanism behind the check of a
composed config (alexnet_lab.settings) and of a constructor's arguments (:func:`checked`).

An annotation says it: ``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, ``X | None``, ``list[X]``,
and ``Annotated[...]`` with annotated_types' bounds (``Ge(1)``, ``Interval(ge=0, lt=1)``), a list's ``Len``
and a ``doc("...")`` that the error message adds.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

import annotated_types as at
from omegaconf import ListConfig, OmegaConf

from alexnet_lab.errors import UserError

Seed = Annotated[int, at.Ge(0), at.Le(2**32 - 1)]  # lightning.seed_everything and numpy take seeds in this range
PositiveInt = Annotated[int, at.Ge(1)]


@dataclasses.dataclass(frozen=True)
class Rule:
    """An annotation taken apart: the types or choices allowed, bounds, list length, and whether null is."""

    kinds: tuple[Any, ...]  # int, float, bool, str, a Literal's choices as a tuple, or anything (not checked)
    bounds: tuple[Any, ...] = ()
    item: Rule | None = None  # for a list
    length: int | None = None
    nullable: bool = False
    hint: str | None = None


def rule(annotation: Any) -> Rule:
    bounds: list[Any] = []
    hint, length = None, None
    while typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, at.DocInfo):
                hint = extra.documentation
            elif isinstance(extra, at.Len):
                length = extra.min_length
            elif isinstance(extra, at.BaseMetadata | at.GroupedMetadata):
                bounds += list(extra) if isinstance(extra, at.GroupedMetadata) else [extra]
    members = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    nullable = type(None) in members
    kinds: list[Any] = []
    item = None
    for member in members:
        if member is type(None):
            continue
        origin = typing.get_origin(member)
        if origin is Literal:
            kinds.append(typing.get_args(member))
        elif origin in (list, tuple, Sequence) or member in (list, tuple):
            kinds.append(list)
            args = [a for a in typing.get_args(member) if a is not Ellipsis]
            item = rule(args[0]) if args else None
        elif typing.get_origin(member) is Annotated:
            inner = rule(member)
            kinds += inner.kinds
            bounds += inner.bounds
            item, length, hint = item or inner.item, length or inner.length, hint or inner.hint
        else:
            kinds.append(member if member in (int, float, bool, str) else Any)
    return Rule(tuple(kinds), tuple(bounds), item, length, nullable, hint)


def _passes(kind: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` is of ``kind``, and the value as that kind (an int given for a float is a float)."""
    if kind is Any:
        return True, value
    if isinstance(kind, tuple):  # a Literal's choices; "32" and 32 are one choice of strings
        shown = str(value) if all(isinstance(c, str) for c in kind) and not isinstance(value, bool) else value
        return any(shown == c and type(shown) is type(c) for c in kind), shown
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool), float(value) if isinstance(
            value, int | float
        ) else value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, kind), value


def _within(bounds: Sequence[Any], value: Any) -> bool:
    checks = {
        at.Ge: lambda b: value >= b.ge,
        at.Gt: lambda b: value > b.gt,
        at.Le: lambda b: value <= b.le,
        at.Lt: lambda b: value < b.lt,
    }
    return all(checks[type(b)](b) for b in bounds if type(b) in checks)


def _type_name(kind: Any, plural: bool) -> str:
    names = {
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
        bool: ("true or false", "booleans"),
        str: ("a string", "strings"),
    }
    return names[kind][plural] if kind in names else ("values" if plural else "a value")


def describe(spec: Rule, plural: bool = False) -> str:
    """What ``spec`` allows, in words: 'an integer >= 1 and <= 10', 'one of lrn, bn, none, or null'."""
    parts = []
    for kind in spec.kinds:
        if isinstance(kind, tuple):
            parts.append("one of " + ", ".join(str(c) for c in kind))
        elif kind is list and spec.item is not None:
            items = describe(spec.item, plural=True)
            each = items.startswith("one of")
            size = f"{spec.length} " if spec.length is not None else ""
            parts.append(f"a list of items, each {items}" if each else f"a list of {size}{items}")
        else:
            parts.append(_type_name(kind, plural))
    text = " or ".join(parts)
    signs = {at.Ge: (">=", "ge"), at.Gt: (">", "gt"), at.Le: ("<=", "le"), at.Lt: ("<", "lt")}
    bounds = [f"{signs[type(b)][0]} {getattr(b, signs[type(b)][1])}" for b in spec.bounds if type(b) in signs]
    if bounds:
        text += " " + " and ".join(bounds)
    if spec.nullable:
        text += ", or null"
    return text + (f" ({spec.hint})" if spec.hint else "")


def check_value(key: str, value: Any, spec: Rule) -> None:
    """Raises a UserError if ``value`` of ``key`` breaks ``spec``. A list whose item has the wrong type is
    shown by that item; a list out of its length, bounds or choices, whole."""
    if value is None:
        if spec.nullable or Any in spec.kinds:
            return
    elif isinstance(value, ListConfig | list | tuple) and list in spec.kinds:
        items = list(value)
        item = spec.item or Rule((Any,))
        for entry in items:
            typed = any(_passes(k, entry)[0] for k in item.kinds if not isinstance(k, tuple)) or any(
                isinstance(k, tuple) for k in item.kinds
            )
            if not typed:
                raise UserError(f"{key}={entry!r} is not allowed: use {describe(spec)}")
        fits = spec.length is None or len(items) == spec.length
        if fits and all(_passes(k, e)[0] and _within(item.bounds, e) for e in items for k in item.kinds[:1]):
            return
        value = OmegaConf.to_container(value) if isinstance(value, ListConfig) else items
    else:
        for kind in spec.kinds:
            fits, shown = _passes(kind, value)
            if fits and (kind is Any or _within(spec.bounds, shown)):
                return
        value = _passes(spec.kinds[0], value)[1] if spec.kinds else value
    raise UserError(f"{key}={value!r} is not allowed: use {describe(spec)}")


def hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of a callable's (a class's constructor's) parameters; those its module cannot resolve at
    run time (names it imports only to type-check) are left out."""
    function = typing.cast(Any, target).__init__ if isinstance(target, type) else target
    try:
        return typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError):
        return {}


F = TypeVar("F", bound=Callable[..., Any])


def checked(init: F) -> F:
    """A constructor whose arguments are checked against its annotations, as a config's are: a value that is
    not allowed raises a UserError (a ValueError) naming it and what is allowed."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        annotations = hints(init)
        for name, value in signature.bind(*args, **kwargs).arguments.items():
            if name in annotations and name != "self":
                check_value(name, value, rule(annotations[name]))
        return init(*args, **kwargs)

    return typing.cast(F, wrapper)
