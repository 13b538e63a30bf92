"""Fixtures shared by the analysis tests."""

from __future__ import annotations

from typing import Any

import pytest

from analysis import lme4


@pytest.fixture
def rscript(need_service: Any) -> str:
    """Rscript with lme4: R (Debian's r-cran-lme4) is installed by tests/ensure_services.sh;
    without it the test skips locally and fails in CI, like the PostgreSQL and browser tests."""
    exe = lme4.rscript()
    if exe is None:
        need_service("R with lme4 is not installed (bash tests/ensure_services.sh installs r-cran-lme4)")
    assert exe is not None
    return exe
