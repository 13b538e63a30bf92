"""What a researcher pastes into Prolific's study form for an imported study.

Prolific needs the study URL (with its three placeholders, which it fills per
participant), the completion codes the app hands out at the end, the number of
places, and an estimated completion time. All of them follow from the package and
the public address the app is served at, so ``study-app prolific`` prints them
instead of leaving the researcher to assemble them by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from study_app.models import Study
from study_app.packages import package_view
from study_app.participant import PROLIFIC_COMPLETE, PROLIFIC_PLACEHOLDERS

# A rough per-screen cost beyond listening: reading, deciding, clicking. Pilots replace it.
SECONDS_PER_ANSWER = 6.0
# Consent, volume set-up, instructions and the questionnaire together.
FIXED_SECONDS = 120.0


@dataclass(frozen=True)
class ProlificSetup:
    study_url: str
    codes: dict[str, str]
    places: int
    minutes: int
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "study_url": self.study_url,
            "codes": self.codes,
            "completion_urls": {k: PROLIFIC_COMPLETE.format(code=v) for k, v in self.codes.items()},
            "places": self.places,
            "estimated_minutes": self.minutes,
            "warnings": self.warnings,
        }


def prolific_setup(study: Study, base_url: str) -> ProlificSetup:
    """The values for Prolific's form; ``base_url`` is where participants reach the app."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--base-url must look like https://study.example.org, got {base_url!r}")
    view = package_view(study)
    warnings = []
    if parts.scheme != "https":
        warnings.append("the base URL is not https: Prolific participants need an encrypted connection")
    if study.status != "open":
        warnings.append(f"the study is '{study.status}': run 'study-app open {study.slug}' before publishing")
    trials = {t.id: t for t in view.manifest.trials}
    clips = view.manifest.clips
    longest = 0.0
    for lst in view.manifest.lists:
        heard = [c for tid in lst.trials for c in (*trials[tid].references, *trials[tid].candidates)]
        listening = sum(clips[c].duration_s for c in heard)
        longest = max(longest, listening + SECONDS_PER_ANSWER * len(lst.trials))
    codes = study.completion_codes
    return ProlificSetup(
        study_url=f"{base_url.rstrip('/')}/s/{study.slug}?{PROLIFIC_PLACEHOLDERS}",
        codes={
            "completed": codes["complete"],
            "screened_out": codes["screened_out"],
            "declined": codes["declined"],
        },
        places=sum(lst.target for lst in study.lists),
        minutes=math.ceil((longest + FIXED_SECONDS) / 60),
        warnings=warnings,
    )
