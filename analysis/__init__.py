"""Statistics for listening-study exports: exclusions, accuracy against chance, agreement,
steering detection, mixed models, CLAP-vs-human, and the report (docs/analysis.md).

Tidy DataFrames in and out, one function per statistic. Never imports torch.
"""

from analysis.exclusions import ExclusionRules, apply_exclusions
from analysis.report import build_report, write_report
from analysis.responses import load_responses, response_summary

__all__ = [
    "ExclusionRules",
    "apply_exclusions",
    "build_report",
    "load_responses",
    "response_summary",
    "write_report",
]
