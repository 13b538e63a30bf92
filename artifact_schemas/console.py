"""Terminal output shared by the command-line tools."""

from __future__ import annotations

import logging
from dataclasses import MISSING
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from artifact_schemas.settings import option_help, setting_default
from artifact_schemas.version import version_option


def stdout_console() -> Console:
    """A console for results; wide when piped so tables are not truncated in logs."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def print_error(prefix: str, message: object) -> None:
    """Print ``prefix message`` to stderr on one line, without rich markup in ``message``.

    Error messages hold things like ``rt_ms[row 3]`` that rich would read as markup,
    and grep-able one-line errors matter more than wrapping.
    """
    Console(stderr=True, soft_wrap=True).print(f"[red]{prefix}[/] {escape(str(message))}", highlight=False)


def typer_app(name: str, help: str) -> typer.Typer:
    """The shared shape of the command-line tools: --help, --version, --verbose."""
    app = typer.Typer(
        name=name,
        help=f"{help} Run '{name} COMMAND --help' for details.",
        no_args_is_help=True,
        rich_markup_mode="markdown",
        add_completion=False,
    )

    @app.callback()
    def _root(
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
        version: bool = version_option(),
    ) -> None:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
        )

    return app


def step_progress(disable: bool = False) -> Progress:
    """A progress bar of training steps: description, bar, ``done/total steps info``, ETA.

    Tasks carry an ``info`` field (the latest losses) shown after the step count.
    """
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps {task.fields[info]}"),
        TimeRemainingColumn(),
    )
    return Progress(*columns, disable=disable, transient=True)


def config_option(config: type, name: str, flag: str, help: str | None = None) -> Any:
    """The typer option ``flag`` of ``config``'s field ``name``: default, help and range from
    the field (``artifact_schemas.settings``), so a command restates none of them.

    ``help`` replaces the field's docstring where the command line needs other words. A
    field whose default is True becomes ``--flag/--no-flag``; a list default is one
    comma-separated word (the command splits it).
    """
    default = setting_default(config, name)
    if isinstance(default, Enum):
        default = default.value  # the word the command line takes and shows (data, not Parallel.DATA)
    elif isinstance(default, list | tuple):
        default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    if default is True:
        flag = f"{flag}/--no-{flag[2:]}"  # on unless switched off
    return typer.Option(... if default is MISSING else default, flag, help=option_help(config, name, help))
