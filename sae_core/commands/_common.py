"""What every ``sae-core`` command shares: one-line errors, list options, field -> flag."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from artifact_schemas import ArtifactError, FieldError
from artifact_schemas.console import print_error
from sae_core.layers import PAPER, LayerChoice

# Config fields whose flag is not the field's name with dashes.
FLAGS = {
    "audio_format": "--format",
    "holdout_fraction": "--holdout",
    "seconds": "--seconds",
    "guidance_scale": "--guidance",
}


def fail(message: str) -> NoReturn:
    print_error("error", message)
    raise typer.Exit(2)


def flag(field: str, overrides: dict[str, str] | None = None) -> str:
    return (overrides or {}).get(field) or FLAGS.get(field) or "--" + field.replace("_", "-")


@contextmanager
def reporting(flags: dict[str, str] | None = None) -> Iterator[None]:
    """Turn a library error into one line on stderr and exit status 2 (fields as flags)."""
    try:
        yield
    except FieldError as exc:
        fail(exc.render(lambda name: flag(name, flags)))
    except (ValueError, ArtifactError, FileNotFoundError, RuntimeError) as exc:
        fail(str(exc))


def parse_list(text: str, kind: type[Any], option: str, what: str = "") -> list[Any]:
    """``"1,2,3"`` -> ``[1, 2, 3]``; a bad item fails naming ``option``."""
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{option}: expected comma-separated {what or kind.__name__ + 's'}, got {text!r}")
    if not values:
        fail(f"{option}: expected at least one value")
    return values


def parse_layer_numbers(text: str) -> list[int]:
    """``--layers`` where only numbers make sense: 4,8."""
    return parse_list(text, int, "--layers", "layer numbers like 4,8")


def parse_layers(text: str) -> LayerChoice:
    """``--layers``: layer numbers like 4,8, or the word paper (``sae_core.layers``)."""
    if text.strip() == PAPER:
        return "paper"
    return parse_list(text, int, "--layers", "layer numbers like 4,8 or paper")
