"""Versioned schemas of the files passed between stages (see docs/formats.md).

Light by design (pydantic, pandas, pyarrow; never torch): every package imports
it, including the web worker.
"""

from artifact_schemas.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from artifact_schemas.detect import KNOWN_FILES, validate_artifact
from artifact_schemas.errors import ArtifactError
from artifact_schemas.jsonfiles import (
    dump_json_model,
    load_json_model,
    load_key,
    load_study,
    manifest_sha256,
    save_json_model,
    save_key,
    save_study,
)
from artifact_schemas.provenance import (
    RUN_FILE,
    RunRecord,
    checksum_path,
    load_run_record,
    new_run_record,
    recorded_run,
    save_run_record,
)
from artifact_schemas.study import (
    AnswerKey,
    Clip,
    ClipKey,
    CompletionCodes,
    Option,
    RatingScale,
    StudyManifest,
    Texts,
    Trial,
    TrialKey,
    TrialList,
)
from artifact_schemas.tables import (
    ACTIVATION_INDEX,
    CORPUS_CONCEPTS,
    CORPUS_METADATA,
    EXAMPLES,
    FEATURES,
    LABELS,
    RESPONSES,
    STEERING,
    TABLES,
    Column,
    TableSchema,
    load_table,
    save_table,
)

__all__ = [
    "ACTIVATION_INDEX",
    "CORPUS_CONCEPTS",
    "CORPUS_METADATA",
    "EXAMPLES",
    "FEATURES",
    "KNOWN_FILES",
    "LABELS",
    "RESPONSES",
    "RUN_FILE",
    "STEERING",
    "TABLES",
    "AnswerKey",
    "ArtifactError",
    "Clip",
    "ClipKey",
    "Column",
    "CompletionCodes",
    "Option",
    "RatingScale",
    "RunRecord",
    "StudyManifest",
    "TableSchema",
    "Texts",
    "Trial",
    "TrialKey",
    "TrialList",
    "atomic_path",
    "checksum_path",
    "dump_json_model",
    "load_json_model",
    "load_key",
    "load_run_record",
    "load_study",
    "load_table",
    "manifest_sha256",
    "new_run_record",
    "recorded_run",
    "save_json_model",
    "save_key",
    "save_run_record",
    "save_study",
    "save_table",
    "validate_artifact",
    "write_bytes_atomic",
    "write_text_atomic",
]
