"""``--version`` for the command-line tools."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import typer

DISTRIBUTION = "music-concepts"


def package_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"{DISTRIBUTION} {package_version()}")
        raise typer.Exit()


def version_option() -> Any:
    return typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    )
