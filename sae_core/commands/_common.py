"""What every ``sae-core`` command shares: options from config fields, one-line errors, lists."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

from artifact_schemas import ArtifactError, FieldError, as_flag
from artifact_schemas.console import config_option, print_error
from sae_core.layers import PAPER, LayerChoice

# Config fields whose flag is not the field's name with dashes, by field (in every config)
# or by "Config.field"; tests/test_thin_commands.py says why each is renamed.
FLAGS = {
    "audio_format": "--format",
    "holdout_fraction": "--holdout",
    "guidance_scale": "--guidance",
    "parts": "--only",
    "allreduce_gb_per_s": "--allreduce-gbps",
    "SteerConfig.seconds": "--duration",
    "SteeringTruthConfig.seconds": "--duration",
    "SteeringTruthConfig.prompts_per_feature": "--prompts",
}


def fail(message: str) -> NoReturn:
    print_error("error", message)
    raise typer.Exit(2)


def flag(field: str, overrides: dict[str, str] | None = None, config: type | None = None) -> str:
    """The flag of a config field: ``overrides`` (a command's arguments), then ``FLAGS``."""
    qualified = f"{config.__name__}.{field}" if config is not None else None
    return (
        (overrides or {}).get(field)
        or (FLAGS.get(qualified) if qualified else None)
        or FLAGS.get(field)
        or as_flag(field)
    )


def option(config: type, name: str, help: str | None = None) -> Any:
    """The option of ``config``'s field ``name``: its flag (``FLAGS``), default, help and
    range, all from the field (``artifact_schemas.console.config_option``). ``help``
    replaces the field's docstring where the command line needs other words (which of a
    command's modes the option belongs to)."""
    return config_option(config, name, flag(name, config=config), help)


@contextmanager
def reporting(flags: dict[str, str] | None = None, config: type | None = None) -> Iterator[None]:
    """Turn a library error into one line on stderr and exit status 2 (``config``'s fields
    as their flags; ``flags`` names the command's arguments)."""
    try:
        yield
    except FieldError as exc:
        fail(exc.render(lambda name: flag(name, flags, config)))
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
