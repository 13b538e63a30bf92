"""The one error type every artifact reader raises."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable or breaks its schema.

    The message always names the file, the field (column or JSON path), the bad
    value and what was expected, so a user can fix the file without reading code.
    """

    def __init__(
        self,
        path: str | Path,
        field: str | None,
        expected: str,
        value: Any = None,
        *,
        has_value: bool = True,
    ) -> None:
        self.path = str(path)
        self.field = field
        self.value = value
        self.expected = expected
        where = f"{self.path}: field '{field}'" if field else self.path
        got = f"got {_short_repr(value)}; " if has_value else ""
        super().__init__(f"{where}: {got}expected {expected}")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the reason.

    Shared by the stages that read audio (sae_core for the models, stimuli_builder
    for study stimuli), so each raises the same error without importing the other.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def as_flag(field: str) -> str:
    """``keep_fraction`` -> ``--keep-fraction``: a field's flag where no command renames it."""
    return "--" + field.replace("_", "-")


class FieldError(ValueError):
    """A config field with a bad value: ``FieldError("keep_fraction", "must be in (0, 1]")``.

    Libraries name the dataclass field; a command line turns it into its flag
    (``--keep-fraction``), so one check serves the library's users and the command's.
    ``other`` names a second field the problem is about, written ``{other}`` in it:
    ``FieldError("relative", "needs {other}", other="features_table")``.
    """

    def __init__(self, field: str, problem: str, *, other: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.other = other
        super().__init__(self.render(lambda name: name))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with every field spelled by ``name`` (e.g. as a command-line flag)."""
        problem = self.problem.replace("{other}", name(self.other)) if self.other else self.problem
        return f"{name(self.field)} {problem}"
