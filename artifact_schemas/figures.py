"""Figures without pyplot: no backend is chosen and no global state changes at import.

``matplotlib.figure.Figure`` renders to files on its own (Agg for PNG, the SVG
backend for SVG), so the stages that plot never call ``matplotlib.use`` and never
open a window, whatever the user's matplotlib configuration says.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from artifact_schemas.atomic import atomic_path


def subplots(nrows: int = 1, ncols: int = 1, **figure_kwargs: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` like ``pyplot.subplots``, but a plain ``Figure`` nobody has to close."""
    # matplotlib only where a figure is drawn: the web worker imports artifact_schemas.
    from matplotlib.figure import Figure

    fig = Figure(**figure_kwargs)
    return fig, fig.subplots(nrows, ncols)


# SVG is otherwise stamped with the time and random element ids: the same figure twice
# would give two files. With these, the same data gives the same bytes (as PNG does).
_SVG_SALT = "music-concepts"


def _save(fig: Any, target: Any, fmt: str) -> None:
    import matplotlib  # as in subplots: not at the web worker's import

    metadata = {"Date": None} if fmt == "svg" else None
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT}):
        fig.savefig(target, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)


def figure_bytes(fig: Any, fmt: str) -> bytes:
    """The figure as PNG (150 dpi) or SVG bytes, cropped to its content."""
    buf = io.BytesIO()
    _save(fig, buf, fmt)
    return buf.getvalue()


def save_figure(fig: Any, out: Path, name: str) -> list[Path]:
    """``out/name.png`` and ``out/name.svg``, each written atomically (temp name, then rename)."""
    paths = []
    for ext in ("png", "svg"):
        path = out / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            _save(fig, tmp, ext)
        paths.append(path)
    return paths
