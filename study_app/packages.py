"""Importing study packages into the database, and the per-process view of one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from artifact_schemas import AnswerKey, StudyManifest, load_key, load_study, manifest_sha256
from study_app.db import db
from study_app.models import Event, Participant, Response, Study, StudyRef, StudySession, Trial, TrialList


class ImportRefused(Exception):
    """The package cannot be imported as asked; the message says why and what to do."""


def import_package(
    package: str | Path, *, replace: bool = False, store_raw_pid: bool = False, status: str = "open"
) -> tuple[Study, bool]:
    """Import ``package`` (idempotent). Returns (study, changed).

    The same package again changes nothing. A different package with the same
    study id is refused unless ``replace`` is set and the study has no responses
    yet (a study with data is never silently rewritten).
    """
    root = Path(package).resolve()
    manifest = load_study(root / "study.json")
    key = load_key(root / "key.json", manifest)
    missing = [c.file for c in manifest.clips.values() if not (root / c.file).is_file()]
    if missing:
        raise ImportRefused(
            f"{root}: audio files missing: {missing[:3]} (run 'stimuli-builder check {root}')"
        )
    sha = manifest_sha256(manifest)
    existing = db.session.scalar(select(Study).where(Study.slug == manifest.study_id))
    if existing is not None:
        if existing.manifest_sha256 == sha:
            if existing.package_path != str(root):
                existing.package_path = str(root)  # the package moved; same content
                db.session.commit()
            return existing, False
        n_responses = db.session.scalar(
            select(func.count(Response.id))
            .join(StudySession, Response.session_id == StudySession.id)
            .where(StudySession.study_id == existing.id)
        )
        if not replace:
            raise ImportRefused(
                f"study '{manifest.study_id}' already exists with a different package; "
                "pass --replace to swap it (only while it has no responses)"
            )
        if n_responses:
            raise ImportRefused(
                f"study '{manifest.study_id}' has {n_responses} responses; it cannot be replaced. "
                "Give the new package another study id."
            )
        kept_codes = dict(existing.completion_codes or {})
        # Children first: SQLite enforces the foreign keys without ON DELETE support in ORM deletes.
        for model in (Event, StudySession, Participant, Trial, TrialList):
            db.session.execute(delete(model).where(model.study_id == existing.id))
        db.session.execute(delete(Study).where(Study.id == existing.id))
        db.session.flush()
    else:
        kept_codes = {}
    study = Study(
        slug=manifest.study_id,
        title=manifest.title,
        manifest_sha256=sha,
        status=status,
        package_path=str(root),
        manifest=manifest.model_dump(mode="json"),
        key=key.model_dump(mode="json"),
        pid_salt=secrets.token_hex(16),
        store_raw_pid=store_raw_pid,
        completion_codes=completion_codes(key, kept_codes),
    )
    db.session.add(study)
    db.session.flush()
    for t in manifest.trials:
        db.session.add(
            Trial(
                study_id=study.id,
                trial_key=t.id,
                kind=t.kind,
                phase=t.phase,
                public=t.model_dump(mode="json"),
                answer_key=key.trials[t.id].model_dump(mode="json"),
            )
        )
    for i, lst in enumerate(manifest.lists):
        db.session.add(
            TrialList(
                study_id=study.id,
                list_key=lst.id,
                position=i,
                target=lst.target_participants,
                trial_ids=list(lst.trials),
            )
        )
    db.session.commit()
    return study, True


# Codes are typed by hand: no 0/O or 1/I. 10 characters of 32 are 50 bits.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
CODE_NAMES = ("complete", "screened_out", "declined")


def completion_codes(key: AnswerKey, kept: dict[str, str]) -> dict[str, str]:
    """The study's codes: the researcher's (key.json), else ``kept`` (a replaced package's,
    perhaps pasted into Prolific already), else drawn with ``secrets``, all distinct."""
    chosen = key.codes.model_dump()
    codes: dict[str, str] = {}
    for name in CODE_NAMES:
        code = chosen.get(name) or kept.get(name)
        while not code or code in codes.values():
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        codes[name] = code
    return codes


@dataclass(frozen=True)
class PackageView:
    """What serving a study needs from its package, parsed once per process."""

    manifest: StudyManifest
    key: AnswerKey
    root: Path
    # list key -> clip ids its sessions may fetch
    list_clips: dict[str, frozenset[str]]
    # trial id -> its public JSON (what the API sends), its key, and its database row id
    public: dict[str, dict[str, Any]]
    trial_types: dict[str, str]
    trial_rows: dict[str, int]


@lru_cache(maxsize=64)
def _view(study_id: int, sha: str, root: str) -> PackageView:
    study = db.session.get(Study, study_id)
    assert study is not None
    manifest = StudyManifest.model_validate(study.manifest)
    key = AnswerKey.model_validate(study.key)
    trials = {t.id: t for t in manifest.trials}
    # Clips every session may fetch: the volume page's sound and the headphone check's example.
    example = manifest.screening.example if manifest.screening else None
    common = {c for c in (manifest.calibration_clip, example.clip if example else None) if c}
    list_clips = {
        lst.id: frozenset(
            common | {c for tid in lst.trials for c in (*trials[tid].references, *trials[tid].candidates)}
        )
        for lst in manifest.lists
    }
    query = select(Trial.trial_key, Trial.id).where(Trial.study_id == study_id)
    rows = {trial_key: row_id for trial_key, row_id in db.session.execute(query)}
    return PackageView(
        manifest,
        key,
        Path(root),
        list_clips,
        public={t.id: t.model_dump(mode="json") for t in manifest.trials},
        trial_types={tid: str(k.trial_type or "") for tid, k in key.trials.items()},
        trial_rows=rows,
    )


def package_view(study: Study | StudyRef) -> PackageView:
    # Keyed by content hash: a replaced package gets a fresh view in every worker.
    return _view(study.id, study.manifest_sha256, study.package_path)
