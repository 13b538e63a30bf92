"""Prolific-format ids for the tests: 24 lowercase hex digits, as Prolific's PROLIFIC_PID,
STUDY_ID and SESSION_ID are (the app refuses anything else at entry, issue 31.4).

Tests name participants ("GOOD", "P1"); ``pid_of`` and ``submission_of`` turn a name into
that participant's Prolific id and submission (SESSION_ID), always the same for a name.
"""

from __future__ import annotations

import hashlib

# The Prolific study the tests' participants arrive from (and that FakeProlific creates).
STUDY = "5f0c3a1e2b4d6f8a9c0e1d2b"


def _hex24(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def pid_of(name: str) -> str:
    """The PROLIFIC_PID of the participant called ``name``."""
    return _hex24(f"pid:{name}")


def submission_of(name: str) -> str:
    """The SESSION_ID (Prolific's submission id) of ``name``'s submission."""
    return _hex24(f"session:{name}")


def prolific_ids(name: str, study: str = STUDY) -> dict[str, str]:
    """The three parameters Prolific's link gives the participant called ``name``."""
    return {"PROLIFIC_PID": pid_of(name), "STUDY_ID": study, "SESSION_ID": submission_of(name)}
