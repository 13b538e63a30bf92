"""Which sessions' data is valid: one definition, used to pay and to analyse.

``study-app prolific --approve`` (and ``--bonus``) pays a completed session without a
person's look only when it passes these rules (``study_app.prolific.pay``), and the
analysis removes the sessions that fail them (``analysis.exclusions``): the same rules,
the same thresholds, the same reasons, computed from the same facts. Before, each side
kept its own copy, and only the analysis looked at reaction times, while neither looked
at the listening evidence (issue 31.3).

The facts of a session (:class:`SessionFacts`) come from its answers as the export
carries them (``screening_passed``, ``attention_correct``, per answer ``phase``,
``rt_ms`` and ``clips_unfetched``): :func:`facts_from_answers` turns those into one value
each, for the app reading its database and for the analysis reading an export.

Light (standard library and artifact_schemas only): the web app and the analysis both import it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from artifact_schemas.settings import check_settings, setting


@dataclass(frozen=True)
class SessionFacts:
    """What the rules look at, for one session (``None``: not known, e.g. no such trials)."""

    screening_passed: bool | None = None
    attention_correct: float | None = None
    # Required clips the server had not served in full to the session when it answered,
    # summed over its answers (the export's clips_unfetched). The app refuses such answers
    # since issue 31.3; older data, and exports without the column, may still have them.
    clips_unheard: int | None = None
    # Median reaction time over the session's main-phase answers, ms.
    median_rt_ms: float | None = None


def _number(value: object) -> float | None:
    """A float, or None for a missing value (None, NaN, pandas' NA)."""
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def facts_from_answers(
    screening_passed: bool | None,
    attention_correct: float | None,
    answers: Iterable[tuple[str, float, int | None]],
) -> SessionFacts:
    """The facts of a session from its answers, each ``(phase, rt_ms, clips_unfetched)``."""
    rts: list[float] = []
    unheard: int | None = None
    for phase, rt_ms, unfetched in answers:
        rt = _number(rt_ms)
        if phase == "main" and rt is not None:
            rts.append(rt)
        missing = _number(unfetched)
        if missing is not None:
            unheard = (unheard or 0) + int(missing)
    passed = None if screening_passed is None or _number(screening_passed) is None else bool(screening_passed)
    return SessionFacts(
        screening_passed=passed,
        attention_correct=_number(attention_correct),
        clips_unheard=unheard,
        median_rt_ms=statistics.median(rts) if rts else None,
    )


@dataclass(frozen=True)
class Rule:
    """One rule: ``name`` heads its row in the analysis' exclusion table; ``check`` gives
    why a session fails it, or ``None`` when it passes (unknown facts pass)."""

    name: str
    check: Callable[[SessionFacts], str | None]


@dataclass(frozen=True)
class ValidityRules:
    """The thresholds; ``None`` (or ``False``) turns a rule off."""

    require_screening_pass: bool = True
    min_attention_correct: float | None = setting(0.5, ge=0, le=1)
    """Exclude below this share of the attention checks answered right."""
    require_clips_heard: bool = True
    """Every required clip of every answer served to the session in full."""
    min_median_rt_ms: float | None = setting(500.0, ge=0)
    """Exclude a median reaction time over the main trials below this (ms)."""

    def __post_init__(self) -> None:
        check_settings(self)

    def rules(self) -> list[Rule]:
        """The rules that are on, in the order the analysis applies them."""
        out: list[Rule] = []
        if self.require_screening_pass:
            out.append(Rule("failed headphone screening", _screening))
        attention = self.min_attention_correct
        if attention is not None:
            out.append(Rule(f"attention checks < {attention:.0%} correct", _attention(attention)))
        if self.require_clips_heard:
            out.append(Rule("clips not heard in full", _clips))
        rt = self.min_median_rt_ms
        if rt is not None:
            out.append(Rule(f"median RT < {rt:.0f} ms", _median_rt(rt)))
        return out

    def reasons(self, facts: SessionFacts) -> list[str]:
        """Why the session's data is not valid; empty when it passes every rule."""
        return [why for rule in self.rules() for why in [rule.check(facts)] if why is not None]

    def describe(self) -> str:
        """The rules in force, one line (printed by ``--approve``)."""
        parts = []
        if self.require_screening_pass:
            parts.append("headphone screening passed")
        if self.min_attention_correct is not None:
            parts.append(f"attention checks >= {self.min_attention_correct:.0%} right")
        if self.require_clips_heard:
            parts.append("every clip served in full before each answer")
        if self.min_median_rt_ms is not None:
            parts.append(f"median RT on main trials >= {self.min_median_rt_ms:.0f} ms")
        return "; ".join(parts) or "none"


def _screening(facts: SessionFacts) -> str | None:
    return "failed the headphone screening" if facts.screening_passed is False else None


def _attention(floor: float) -> Callable[[SessionFacts], str | None]:
    def check(facts: SessionFacts) -> str | None:
        share = facts.attention_correct
        if share is not None and share < floor:
            return f"answered {share:.0%} of attention checks right (< {floor:.0%})"
        return None

    return check


def _clips(facts: SessionFacts) -> str | None:
    if facts.clips_unheard:
        return f"answered with {facts.clips_unheard} required clip(s) not served in full"
    return None


def _median_rt(floor: float) -> Callable[[SessionFacts], str | None]:
    def check(facts: SessionFacts) -> str | None:
        rt = facts.median_rt_ms
        if rt is not None and rt < floor:
            return f"median reaction time {rt:.0f} ms (< {floor:.0f} ms)"
        return None

    return check
