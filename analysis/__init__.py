"""Statistics for listening studies: exclusions, agreement, significance, correlations.

Tidy DataFrames in and out; never imports torch.
"""

from analysis.responses import load_responses, response_summary

__all__ = ["load_responses", "response_summary"]
