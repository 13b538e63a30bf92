"""The :class:`Report` a study's analysis fills: its own module so that computing
(``report``), drawing (``report_figures``) and rendering (``report_render``) all import
it from below instead of from each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Report:
    title: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)  # name -> SVG text
    pngs: dict[str, bytes] = field(default_factory=dict)  # name -> PNG bytes (same figure)
    meta: dict[str, Any] = field(default_factory=dict)
    # question -> (formula, the rows the models used): written for analysis.R
    model_data: dict[str, tuple[str, str, pd.DataFrame]] = field(default_factory=dict)
