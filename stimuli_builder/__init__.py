"""Turn a run directory (features, labels, steering pairs) and a study config into a
randomised, balanced, blinded study package (docs/study-config.md)."""

from stimuli_builder.build import build_package
from stimuli_builder.check import CheckReport, check_package
from stimuli_builder.config import StudyConfig, load_config
from stimuli_builder.plan import binomial_n, plan_study

__all__ = [
    "CheckReport",
    "StudyConfig",
    "binomial_n",
    "build_package",
    "check_package",
    "load_config",
    "plan_study",
]
