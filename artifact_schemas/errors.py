"""The one error type every artifact reader raises."""

from __future__ import annotations

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
