"""``build_package``: config + run directory, or config + your own clips -> study package
(the ``build`` command's library form)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from statistics import mean
from typing import Any

from artifact_schemas import AnswerKey, ArtifactError, StudyManifest
from stimuli_builder.bundle import load_bundle, select_features
from stimuli_builder.conditions import load_conditions
from stimuli_builder.config import StudyConfig, load_config
from stimuli_builder.design import build_design
from stimuli_builder.foils import FoilPicker, normalise
from stimuli_builder.layout import Design
from stimuli_builder.no_listening import StrategyResult, out_of_order_choice
from stimuli_builder.own_design import build_own_design
from stimuli_builder.package import write_package

log = logging.getLogger(__name__)


def build_package(
    config_path: str | Path, bundle_dir: str | Path | None, out: str | Path, *, force: bool = False
) -> tuple[StudyManifest, AnswerKey]:
    """Build the package ``out``; errors name the config key or the input file at fault.

    ``bundle_dir`` is the sae-core run directory a study of SAE features is built from;
    ``None`` for a config with ``[stimuli]`` (your own clips, listed in a conditions CSV).
    """
    config_path = Path(config_path)
    config, texts = load_config(config_path)
    given = config.study.salt is not None
    if not given:  # a secret of this package's (StudySection.salt)
        config = _salted(config)
    if config.stimuli is not None:
        if bundle_dir is not None:
            raise ArtifactError(
                config_path,
                "stimuli",
                f"no run directory (got {bundle_dir}): this config rates your own clips, listed in "
                f"{config.stimuli.conditions}; leave the run directory (--bundle) out",
                has_value=False,
            )
        design, inputs, parents = _own_stimuli(config, config_path)
    elif bundle_dir is None:
        raise ArtifactError(
            config_path,
            None,
            "a run directory from sae-core (stimuli-builder build --bundle RUN_DIR) for a study of SAE "
            "features, or a [stimuli] section naming your own clips (docs/study-config.md)",
            has_value=False,
        )
    else:
        config, design, inputs, parents = _run_features(config, config_path, bundle_dir, given)
    for warning in design.warnings:
        log.warning(warning)
    return write_package(
        design, config, texts, out, config_path=config_path, inputs=inputs, parents=parents, force=force
    )


# Salts a build without one of its own draws, at most, looking for a design that gives no
# answer away by construction (see _gives_away).
SALT_DRAWS = 20


def _salted(config: StudyConfig) -> StudyConfig:
    return config.model_copy(
        update={"study": config.study.model_copy(update={"salt": secrets.token_hex(16)})}
    )


def _run_features(
    config: StudyConfig, config_path: Path, bundle_dir: str | Path, salt_given: bool
) -> tuple[StudyConfig, Design, list[Path], list[dict[str, Any]]]:
    """The design of a study of SAE features. Where the build draws its salt, it draws
    again (up to ``SALT_DRAWS`` times) while the design gives an answer away: with a small
    pool of labels a third of the test config's salts made a list rate the answer of one of
    its choices, or all instructed checks share one answer, which `check` then failed."""
    bundle = load_bundle(bundle_dir)
    features = select_features(bundle, config, config_path)
    lv = config.label_validation
    pool = [] if bundle.labels is None else list(bundle.labels["label"])
    foils = FoilPicker(pool, lv.synonyms, lv.foil_strategy, lv.clap_model)
    for draw in range(1 if salt_given else SALT_DRAWS):
        if draw:
            config = _salted(config)
        try:
            design = build_design(features, config, foils)
        except ValueError as exc:
            raise _config_error(config_path, exc) from exc
        if not _gives_away(design):
            break
    return config, design, bundle.inputs, bundle.parents()


def _gives_away(design: Design) -> bool:
    """Whether a list rates a label that answers one of its label choices (any feature's:
    stricter than `check`, which flags the same feature's only, as issue 34.1 asks), or
    every instructed check has one answer (as `check` flags). The design-level twin of
    check.py's rating and attention-answer leaks, which read a written package."""
    for lst in design.lists:
        specs = [design.trials[k] for k in lst if design.trials[k].phase == "main"]
        answers = {
            normalise(t.options[t.correct_option])
            for t in specs
            if t.kind == "label_choice" and t.correct_option is not None and "check" not in t.meta
        }
        if any(normalise(t.meta["label"]) in answers for t in specs if t.kind == "label_rating"):
            return True
    instructed = [
        normalise(t.options[t.correct_option])
        for t in design.trials.values()
        if t.meta.get("check") == "instructed" and t.correct_option is not None
    ]
    return (len(instructed) >= 2 and len(set(instructed)) == 1) or _out_of_order_leaks(design)


def _out_of_order_leaks(design: Design) -> bool:
    """Whether "the option without which the others are in alphabetical order" scores as a
    leak on the label choices (as `check` scores it): foils in a drawn order leave the answer
    the one out of order in 1 of 6 trials, and on a small study's few trials that scored
    0.48 against chance 0.25 for one salt in a few dozen (a drawn salt made it a flaky test)."""
    scores, chances = [], []
    for lst in design.lists:
        for t in (design.trials[k] for k in lst):
            if t.phase != "main" or t.kind != "label_choice" or "check" in t.meta or t.correct_option is None:
                continue
            scores.append(out_of_order_choice(t.options)[t.correct_option])
            chances.append(1 / len(t.options))
    if not scores:
        return False
    result = StrategyResult("label_choice", "out of order", len(scores), mean(scores), mean(chances))
    return result.leak


def _own_stimuli(config: StudyConfig, config_path: Path) -> tuple[Design, list[Path], list[dict[str, Any]]]:
    assert config.stimuli is not None
    csv_path = config_path.parent / config.stimuli.conditions
    if not csv_path.is_file():
        raise ArtifactError(
            config_path,
            "stimuli.conditions",
            f"a CSV file of your clips' conditions, relative to the config (looked for {csv_path})",
            config.stimuli.conditions,
        )
    stimuli = load_conditions(csv_path, reserved=config.mushra.anchors)
    try:
        design = build_own_design(stimuli, config)
    except ValueError as exc:
        raise _config_error(config_path, exc) from exc
    return design, stimuli.inputs, []


def _config_error(config_path: Path, exc: ValueError) -> ArtifactError:
    """A design's "section.key: message" as an error naming the config file and the key."""
    field, _, message = str(exc).partition(": ")
    return ArtifactError(config_path, field, message, has_value=False)
