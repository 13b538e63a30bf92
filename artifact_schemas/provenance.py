"""``run.json``: how a stage's output was made, so that it can be made again."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from artifact_schemas.jsonfiles import load_json_model, save_json_model

RUN_FILE = "run.json"

# Versions worth knowing when a result has to be reproduced.
_TRACKED_PACKAGES = (
    "music-concepts",
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "pandas",
    "soundfile",
    "pyloudnorm",
    "statsmodels",
    "flask",
    "sqlalchemy",
)


class InputFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[int, Field(ge=0)]
    files: Annotated[int, Field(ge=1)] = 1


class RunRecord(BaseModel):
    """Provenance of one stage run: command, config, seeds, versions, inputs, times."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    stage: str
    command: list[str]
    config: dict[str, Any] = Field(default_factory=dict)
    seeds: dict[str, int] = Field(default_factory=dict)
    packages: dict[str, str] = Field(default_factory=dict)
    python: str = ""
    platform: str = ""
    git_revision: str | None = None
    inputs: list[InputFile] = Field(default_factory=list)
    # run.json of the stages whose outputs this one read, so a study package
    # carries the history of the run it was built from.
    parents: list[dict[str, Any]] = Field(default_factory=list)
    # What the stage left out of its output, and why (e.g. a label with too few foils).
    warnings: list[str] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime | None = None


def checksum_path(path: str | Path) -> InputFile:
    """SHA-256 of a file, or of a directory's sorted (relative path, file digest) list."""
    path = Path(path)
    if path.is_file():
        digest, size = _file_sha256(path)
        return InputFile(path=str(path), sha256=digest, bytes=size)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != RUN_FILE)
    outer = hashlib.sha256()
    total = 0
    for f in files:
        digest, size = _file_sha256(f)
        outer.update(f"{f.relative_to(path).as_posix()}\0{digest}\n".encode())
        total += size
    return InputFile(path=str(path), sha256=outer.hexdigest(), bytes=total, files=max(len(files), 1))


def _file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def new_run_record(
    stage: str,
    *,
    config: dict[str, Any] | None = None,
    seeds: dict[str, int] | None = None,
    inputs: Iterable[str | Path] = (),
    command: Sequence[str] | None = None,
) -> RunRecord:
    """Start a record for ``stage``; inputs are checksummed now, before they can change."""
    parents = []
    for inp in inputs:
        parent_file = Path(inp) / RUN_FILE
        if parent_file.is_file():
            parents.append(load_run_record(parent_file).model_dump(mode="json"))
    return RunRecord(
        stage=stage,
        command=list(command if command is not None else sys.argv),
        config=config or {},
        seeds=seeds or {},
        packages=_package_versions(),
        python=platform.python_version(),
        platform=platform.platform(),
        git_revision=_git_revision(),
        inputs=[checksum_path(p) for p in inputs],
        parents=parents,
        started_at=datetime.now(UTC),
    )


@contextlib.contextmanager
def recorded_run(
    out_dir: str | Path, stage: str, run_file: str = RUN_FILE, **kwargs: Any
) -> Iterator[RunRecord]:
    """Context manager writing ``out_dir/run_file`` when the stage finishes without error.

    ``run_file`` names the record when a stage writes a single file beside others
    (``labels.run.json`` next to ``labels.parquet``) rather than a directory of its own.
    """
    record = new_run_record(stage, **kwargs)
    yield record
    record.finished_at = datetime.now(UTC)
    save_run_record(record, Path(out_dir) / run_file)


def save_run_record(record: RunRecord, path: str | Path) -> Path:
    return save_json_model(record, path)


def load_run_record(path: str | Path) -> RunRecord:
    return load_json_model(path, RunRecord)
