"""Config fields that carry their range: one default, one check, one help text."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field

import pytest

from artifact_schemas import FieldError
from artifact_schemas.settings import (
    check_settings,
    same_as,
    setting,
    setting_default,
    setting_help,
    setting_range,
)


@dataclass
class Shape:
    k: int = setting(32, ge=1)
    """Active latents per frame."""
    share: float = setting(1.0, gt=0, le=1)
    """Share of frames kept."""
    mode: str = setting("topk", choices=("topk", "relu"))
    """The sparsity mechanism."""
    lr: float | None = setting(None, gt=0)
    """Learning rate; None picks one."""
    tags: list[str] = field(default_factory=lambda: ["a", "b"])
    """Tags."""

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(kw_only=True)
class Run(Shape):
    width: int = same_as(Shape, "k")
    """Unused docstring: same_as documents from the source field."""
    clips: int = setting(ge=1)
    """Required, with a range."""


def test_a_value_outside_its_range_or_choices_names_the_field() -> None:
    with pytest.raises(FieldError, match=r"^k must be >= 1, got 0$"):
        Shape(k=0)
    with pytest.raises(FieldError, match=r"^share must be in \(0, 1\], got 1.5$"):
        Shape(share=1.5)
    with pytest.raises(FieldError, match=r"^share must be in \(0, 1\], got 0$"):
        Shape(share=0)
    with pytest.raises(FieldError, match=r"^mode must be one of topk, relu, got 'l1'$"):
        Shape(mode="l1")
    with pytest.raises(FieldError, match=r"^lr must be > 0"):
        Shape(lr=-1.0)
    assert Shape(share=1.0, lr=None).share == 1.0  # the closed end and an unset optional pass


def test_a_reused_field_keeps_the_default_the_range_and_the_help_of_its_source() -> None:
    assert setting_default(Run, "width") == 32
    assert setting_range(Run, "width") == ">= 1"
    assert setting_help(Run, "width") == "Active latents per frame."
    with pytest.raises(FieldError, match="width must be >= 1"):
        Run(width=0, clips=1)
    # Inherited fields are documented where they are declared.
    assert setting_help(Run, "mode") == "The sparsity mechanism."
    assert setting_default(Run, "clips") is MISSING
    assert setting_default(Shape, "tags") == ["a", "b"]
    assert setting_range(Shape, "mode") == "one of topk, relu"
    assert setting_range(Shape, "tags") is None


def test_a_field_without_a_docstring_is_refused_by_name() -> None:
    @dataclass
    class Bare:
        n: int = 3

    with pytest.raises(LookupError, match=r"Bare.n has no docstring"):
        setting_help(Bare, "n")
