"""``build_package``: config + run directory -> study package (the ``build`` command's library form)."""

from __future__ import annotations

import logging
from pathlib import Path

from artifact_schemas import AnswerKey, ArtifactError, StudyManifest
from stimuli_builder.bundle import load_bundle, select_features
from stimuli_builder.config import load_config
from stimuli_builder.design import build_design
from stimuli_builder.foils import FoilPicker
from stimuli_builder.package import write_package

log = logging.getLogger(__name__)


def build_package(
    config_path: str | Path, bundle_dir: str | Path, out: str | Path, *, force: bool = False
) -> tuple[StudyManifest, AnswerKey]:
    """Build the package ``out``; errors name the config key or the input file at fault."""
    config_path = Path(config_path)
    config, texts = load_config(config_path)
    bundle = load_bundle(bundle_dir)
    features = select_features(bundle, config, config_path)
    lv = config.label_validation
    pool = [] if bundle.labels is None else list(bundle.labels["label"])
    foils = FoilPicker(pool, lv.synonyms, lv.foil_strategy, lv.clap_model)
    try:
        design = build_design(features, config, foils)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        raise ArtifactError(config_path, field, message, has_value=False) from exc
    for warning in design.warnings:
        log.warning(warning)
    return write_package(design, config, texts, bundle, out, config_path=config_path, force=force)
