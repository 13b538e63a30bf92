"""docs/formats.md documents every field of every artifact schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from artifact_schemas import TABLES, provenance, study

DOC = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
# Every pydantic model of the study package and the run record.
MODELS = [
    m
    for module in (study, provenance)
    for m in vars(module).values()
    if isinstance(m, type)
    and issubclass(m, BaseModel)
    and m.__module__ == module.__name__
    and not m.__name__.startswith("_")
]


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_column_is_documented(name: str) -> None:
    schema = TABLES[name]
    assert f"`{schema.name}` (version {schema.version})" in DOC
    missing = [c.name for c in schema.columns if f"`{c.name}`" not in DOC]
    assert not missing, f"docs/formats.md lacks columns {missing} of {name}"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_json_field_is_documented(model: type[BaseModel]) -> None:
    missing = [f for f in model.model_fields if f"`{f}`" not in DOC]
    assert not missing, f"docs/formats.md lacks fields {missing} of {model.__name__}"
