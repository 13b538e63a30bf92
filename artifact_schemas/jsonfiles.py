"""Validated, atomic reading and writing of the JSON artifacts."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from artifact_schemas.atomic import write_bytes_atomic
from artifact_schemas.errors import ArtifactError
from artifact_schemas.study import AnswerKey, StudyManifest

M = TypeVar("M", bound=BaseModel)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def from_validation_error(
    path: str | Path, exc: ValidationError, doc: str = "docs/formats.md"
) -> ArtifactError:
    """The first problem of a pydantic error as an :class:`ArtifactError` naming file and field."""
    err = exc.errors(include_url=False)[0]
    has_value = err["type"] != "missing"
    expected = err["msg"]
    if err["type"] == "extra_forbidden":
        expected = f"no such field (check its spelling against {doc})"
    elif err["type"] == "missing":
        expected = "this required field to be present"
    return ArtifactError(path, _field_path(err["loc"]), expected, err.get("input"), has_value=has_value)


def load_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The TOML file ``path`` as a dict; :class:`ArtifactError` naming it ("a readable
    ``what``", "valid TOML") when it cannot be read or parsed."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArtifactError(path, None, f"a readable {what} ({exc.strerror})", has_value=False) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, None, f"valid TOML ({exc})", has_value=False) from exc


def load_json_model(path: str | Path, model: type[M]) -> M:
    """Read ``path`` as JSON and validate it as ``model``; raise :class:`ArtifactError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(
            path, None, f"a readable {model.__name__} file ({exc.strerror})", has_value=False
        ) from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, None, f"valid JSON ({exc})", has_value=False) from exc
    if isinstance(data, dict) and "schema_version" in data:
        version = data["schema_version"]
        current = model.model_fields["schema_version"].default
        if isinstance(version, int) and isinstance(current, int) and version > current:
            raise ArtifactError(
                path,
                "schema_version",
                f"<= {current} (written by a newer release; upgrade this package)",
                version,
            )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(path, exc) from exc


def dump_json_model(obj: BaseModel) -> bytes:
    """Canonical JSON bytes (sorted keys) so equal objects give byte-identical files."""
    data: Any = obj.model_dump(mode="json")
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def save_json_model(obj: BaseModel, path: str | Path) -> Path:
    """Write ``obj`` to ``path`` atomically as canonical JSON."""
    write_bytes_atomic(path, dump_json_model(obj))
    return Path(path)


def load_study(path: str | Path) -> StudyManifest:
    """Load and validate a ``study.json``."""
    return load_json_model(path, StudyManifest)


def save_study(manifest: StudyManifest, path: str | Path) -> Path:
    return save_json_model(manifest, path)


def load_key(path: str | Path, manifest: StudyManifest | None = None) -> AnswerKey:
    """Load a ``key.json``; with ``manifest``, also check that the two belong together."""
    key = load_json_model(path, AnswerKey)
    if manifest is not None:
        problems = key.check_matches(manifest)
        if problems:
            raise ArtifactError(path, "trials", "a key matching study.json", problems[0])
    return key


def save_key(key: AnswerKey, path: str | Path) -> Path:
    return save_json_model(key, path)


def manifest_sha256(manifest: StudyManifest) -> str:
    """Digest of the canonical manifest bytes, recorded in the key to pair the two."""
    return hashlib.sha256(dump_json_model(manifest)).hexdigest()
