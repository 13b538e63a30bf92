"""Config fields that carry their own range: one default, one check, one help text per field.

A stage's config dataclass declares a field with :func:`setting` (its default and, where
it has one, its range or its choices) and a docstring under it; the config's
``__post_init__`` calls :func:`check_settings`. A command line builds the field's option
from the same field (``sae_core.commands._common.option``): default, help and the range it
shows come from here, so a command states none of them again and the range is checked in
one place, where a script calling the library meets the same check.

Written here rather than taken from a library: sparsify's ``simple_parsing`` and typer's
``min``/``max`` each check a range only on the command line, and pydantic would turn every
stage's config (and its ``dataclasses.replace``/``asdict`` users) into a model.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from functools import cache
from typing import Any

from artifact_schemas.errors import FieldError


@dataclass(frozen=True)
class Bounds:
    """A numeric range; each end open (``gt``/``lt``), closed (``ge``/``le``) or absent."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def contains(self, value: float) -> bool:
        return not (
            (self.ge is not None and not value >= self.ge)
            or (self.gt is not None and not value > self.gt)
            or (self.le is not None and not value <= self.le)
            or (self.lt is not None and not value < self.lt)
        )

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in (0, 1]``: how the message and the help say the range."""
        low, closed_low = (self.ge, True) if self.ge is not None else (self.gt, False)
        high, closed_high = (self.le, True) if self.le is not None else (self.lt, False)
        if low is not None and high is not None:
            return f"in {'[' if closed_low else '('}{_num(low)}, {_num(high)}{']' if closed_high else ')'}"
        if low is not None:
            return f"{'>=' if closed_low else '>'} {_num(low)}"
        return f"{'<=' if closed_high else '<'} {_num(high)}"


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A dataclass field with its range (``ge``, ``gt``, ``le``, ``lt``) or ``choices``.

    ``k: int = setting(32, ge=1)`` then a docstring: the default is stated once, the
    range is checked by :func:`check_settings` and shown by the command line.
    """
    metadata: dict[str, Any] = {}
    if any(end is not None for end in (ge, gt, le, lt)):
        metadata["bounds"] = Bounds(ge, gt, le, lt)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, default_factory=default_factory, metadata=metadata)


def same_as(config: type, name: str) -> Any:
    """A field of another config reused whole (default and range): stated once, in ``config``."""
    source = _field(config, name)
    metadata = {"documented_in": (config, name), **source.metadata}
    return field(default=source.default, default_factory=source.default_factory, metadata=metadata)


def check_settings(config: Any) -> None:
    """Raise :class:`FieldError` for the first field outside its range or its choices.

    ``None`` passes: an optional field left unset has nothing to check.
    """
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        bounds: Bounds | None = f.metadata.get("bounds")
        if bounds is not None and not bounds.contains(value):
            raise FieldError(f.name, f"must be {bounds.describe()}, got {value}")
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise FieldError(f.name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


def setting_default(config: type, name: str) -> Any:
    """The field's default (a factory's value), or ``MISSING`` for a required field."""
    f = _field(config, name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def setting_range(config: type, name: str) -> str | None:
    """How the field's range or choices read in a help text, or ``None``."""
    f = _field(config, name)
    if "bounds" in f.metadata:
        return str(f.metadata["bounds"].describe())
    if "choices" in f.metadata:
        return "one of " + ", ".join(map(str, f.metadata["choices"]))
    return None


def option_help(config: type, name: str, help: str | None = None) -> str:
    """What a command line says of the field: ``help`` or its docstring, then its range
    (``[>= 1]``). Shared by the typer and the click option builders."""
    text = help or setting_help(config, name)
    shown = setting_range(config, name)
    return f"{text} [{shown}]" if shown else text


def setting_help(config: type, name: str) -> str:
    """The docstring written under the field (in ``config``, a class it inherits it from, or
    the config a :func:`same_as` field came from)."""
    documented_in = _field(config, name).metadata.get("documented_in")
    if documented_in is not None:
        return setting_help(*documented_in)
    for klass in config.__mro__:
        text = _attribute_docstrings(klass).get(name)
        if text:
            return text
    raise LookupError(f"{config.__name__}.{name} has no docstring: write one under the field")


def _field(config: type, name: str) -> Field[Any]:
    for f in fields(config):
        if f.name == name:
            return f
    raise LookupError(f"{config.__name__} has no field {name!r}")


@cache
def _attribute_docstrings(klass: type) -> dict[str, str]:
    """``{field: docstring}`` read from the class source: a string right under an annotation."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0]
    found: dict[str, str] = {}
    if not isinstance(body, ast.ClassDef):
        return found
    for this, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(this, ast.AnnAssign)
            and isinstance(this.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[this.target.id] = " ".join(after.value.value.split())
    return found
