"""What a run of bot participants is asked to do (``study-app simulate``, tests, benchmarks).

Apart from the bots themselves (``study_app.simulate``, which loads httpx): the command
builds its options from :class:`BotConfig`'s fields, and the web worker registers that
command without loading the bots.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from artifact_schemas import FieldError
from artifact_schemas.settings import check_settings, setting

LISTEN_MODES = ("full", "first_byte", "none")


@dataclass(frozen=True)
class BotConfig:
    participants: int = setting(10, ge=1)
    """Bot participants to run."""
    concurrency: int = setting(4, ge=1, le=512)
    """Bots at a time."""
    accuracy: float = setting(0.7, ge=0, le=1)
    """Probability of the right answer in label trials (and practice)."""
    steer_accuracy: float | None = setting(None, ge=0, le=1)
    """Same for steering trials (default: accuracy)."""
    fail_screening: float = setting(0.0, ge=0, le=1)
    """Fraction of bots that fail the headphone check."""
    chaos: bool = False
    """Random reloads, repeated submits, dropped connections, retries."""
    seed: int = 0
    """Seed of the bots' answers, timings and ids."""
    pace: float = setting(0.0, ge=0)
    """Seconds waited per second of simulated reaction time (0: answer at once)."""
    listen: str = setting("full", choices=LISTEN_MODES)
    """How bots get the clips: whole, as a browser does; or the cheats the server must refuse
    (one byte of each, or none): with LISTEN_FACTOR > 0 such bots end 'refused 425'."""
    # Slider trials (mushra, slider): the planted true mean of each condition (the key's
    # ClipKey.condition) on a 0-100 scale; a condition not named takes its role's default
    # (simulate.SLIDER_MEANS). Each bot adds its own offset and each rating its own noise.
    slider_means: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_settings(self)
        bad = {c: m for c, m in self.slider_means.items() if not 0 <= m <= 100}
        if bad:
            raise FieldError("slider_means", f"are on a 0-100 scale, got {bad}")


def parse_slider_means(pairs: Iterable[str]) -> dict[str, float]:
    """``["codec_a=70", ...]`` as BotConfig.slider_means (ValueError names the bad pair)."""
    means = {}
    for pair in pairs:
        condition, _, mean = pair.partition("=")
        try:
            value = float(mean)
        except ValueError:
            value = math.nan
        if not condition or not 0 <= value <= 100:  # nan fails the range too
            raise ValueError(f"expected CONDITION=MEAN with MEAN in 0-100, got {pair!r}")
        means[condition] = value
    return means
