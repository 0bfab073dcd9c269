"""What a setting may be, declared once: in the annotation of the argument that takes it (``Literal[...]``,
``Annotated[float, Gt(0)]``), checked by pydantic in strict mode (no ``true`` for an integer, no string for a number).
:func:`checked` checks a constructor's arguments, :func:`check_value` a config's value (alexnet_lab.settings): either
raises a UserError naming the key, the value and, in pydantic's words, what is allowed."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Le
from omegaconf import OmegaConf
from pydantic import ConfigDict, TypeAdapter, ValidationError, validate_call

from alexnet_lab.errors import UserError

Seed = Annotated[int, Ge(0), Le(2**32 - 1)]  # lightning.seed_everything and numpy take seeds in this range
PositiveInt = Annotated[int, Ge(1)]
STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)
_adapter = functools.cache(functools.partial(TypeAdapter, config=STRICT))  # one validator per annotation


def plain(value: Any) -> Any:
    """An OmegaConf node as the lists and dicts it holds; anything else as it is."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def not_allowed(key: str, error: ValidationError, named: bool = False) -> UserError:
    """One line for the first value ``error`` found wrong, under ``key`` and its place in a list (``named``: the
    error's locations start with the argument's name)."""
    first = error.errors()[0]
    where = "".join(f"[{part}]" for part in first["loc"][named:] if isinstance(part, int))  # not a union's member
    return UserError(f"{key}{where}={first['input']!r} is not allowed: {first['msg']}")


def check_value(key: str, value: Any, annotation: Any) -> Any:
    """``value`` as ``annotation`` makes it (an integer given for a number is a number), or a UserError."""
    try:
        return _adapter(annotation).validate_python(plain(value), strict=True)
    except ValidationError as error:
        raise not_allowed(key, error) from None


F = TypeVar("F", bound=Callable[..., Any])


def checked(init: F) -> F:
    """A constructor whose arguments are checked against its annotations, as a config's are."""
    validated = validate_call(config=STRICT)(init)
    names = list(inspect.signature(init).parameters)

    @functools.wraps(init)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return validated(*map(plain, args), **{name: plain(value) for name, value in kwargs.items()})
        except ValidationError as error:
            where = error.errors()[0]["loc"][0]  # a keyword's name, or a positional argument's place
            raise not_allowed(names[where] if isinstance(where, int) else str(where), error, named=True) from None

    return typing.cast(F, wrapper)
