"""Schemas of the tabular artifacts (Parquet and CSV) and their validated readers/writers.

Validation is column-wise and vectorised: per-row pydantic models would take
minutes on the million-row tables (activation indexes, response exports) these
files hold, and pandera would add a heavy dependency to the web worker for
what is a few dozen lines here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from artifact_schemas.atomic import atomic_path
from artifact_schemas.errors import ArtifactError
from artifact_schemas.study import TrialType

DType = Literal["int", "float", "str", "bool"]

# Keys in the Parquet footer's key-value metadata.
_META_ARTIFACT = b"artifact"
_META_VERSION = b"schema_version"


@dataclass(frozen=True)
class Column:
    """One column of a tabular artifact."""

    name: str
    dtype: DType
    doc: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    # Added after files of this version were written: a file without it reads as all null.
    optional: bool = False


@dataclass(frozen=True)
class TableSchema:
    """A versioned table: required columns, their types and value ranges.

    Extra columns are allowed and kept (stages may record more than the
    contract requires); missing or ill-typed required columns are errors.
    """

    name: str
    version: int
    doc: str
    columns: tuple[Column, ...]
    unique: tuple[tuple[str, ...], ...] = field(default=())
    # (old name, current name) of columns renamed in a later version: files of the older
    # version are read with the current name (the reader of every earlier version).
    renamed: tuple[tuple[str, str], ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def validate(self, df: pd.DataFrame, source: str | Path = "<DataFrame>") -> pd.DataFrame:
        """Return ``df`` with canonical dtypes, or raise :class:`ArtifactError`."""
        df = df.copy()
        for old, new in self.renamed:
            if old in df.columns and new not in df.columns:
                df = df.rename(columns={old: new})
        for col in self.columns:
            if col.name not in df.columns and col.optional:
                df[col.name] = None
            if col.name not in df.columns:
                raise ArtifactError(
                    source,
                    col.name,
                    f"a column '{col.name}' ({col.dtype}: {col.doc})",
                    has_value=False,
                )
            df[col.name] = _coerce_column(df[col.name], col, source)
        for key in self.unique:
            dup = df.duplicated(list(key), keep=False)
            if dup.any():
                first = df.loc[dup, list(key)].iloc[0].tolist()
                raise ArtifactError(
                    source,
                    ",".join(key),
                    f"each ({', '.join(key)}) to appear once",
                    first,
                )
        return df


def _bad_row(series: pd.Series, mask: np.ndarray | pd.Series) -> tuple[object, object]:
    idx = series.index[np.asarray(mask, dtype=bool)][0]
    value = series.loc[idx]
    # numpy scalars print as np.float64(1.5); users should read 1.5.
    return idx, value.item() if isinstance(value, np.generic) else value


def _coerce_column(series: pd.Series, col: Column, source: str | Path) -> pd.Series:
    nulls = series.isna().to_numpy()
    if nulls.any() and not col.nullable:
        row, _ = _bad_row(series, nulls)
        raise ArtifactError(source, f"{col.name}[row {row}]", f"a {col.dtype} (not null)", None)
    present = series[~nulls]
    out: pd.Series
    if col.dtype in ("int", "float"):
        numeric = pd.to_numeric(present, errors="coerce")
        bad = numeric.isna().to_numpy()
        if bad.any():
            row, value = _bad_row(present, bad)
            raise ArtifactError(source, f"{col.name}[row {row}]", f"a number ({col.doc})", value)
        if col.dtype == "int":
            frac = (numeric % 1 != 0).to_numpy()
            if frac.any():
                row, value = _bad_row(present, frac)
                raise ArtifactError(source, f"{col.name}[row {row}]", f"an integer ({col.doc})", value)
        if col.min is not None and (numeric < col.min).any():
            row, value = _bad_row(present, (numeric < col.min).to_numpy())
            raise ArtifactError(source, f"{col.name}[row {row}]", f">= {col.min} ({col.doc})", value)
        if col.max is not None and (numeric > col.max).any():
            row, value = _bad_row(present, (numeric > col.max).to_numpy())
            raise ArtifactError(source, f"{col.name}[row {row}]", f"<= {col.max} ({col.doc})", value)
        full = pd.to_numeric(series, errors="coerce")
        if col.dtype == "int":
            out = full.astype("Int64" if col.nullable else "int64")
        else:
            out = full.astype("float64")
    elif col.dtype == "bool" and pd.api.types.is_bool_dtype(series.dtype):
        # Parquet's booleans: nothing to parse (the map below costs 0.1 s per 100k rows).
        out = series.astype("boolean" if col.nullable else "bool")
    elif col.dtype == "bool":
        parsed = present.map(_parse_bool)
        bad = parsed.isna().to_numpy()
        if bad.any():
            row, value = _bad_row(present, bad)
            raise ArtifactError(source, f"{col.name}[row {row}]", "true or false", value)
        converted = series.map(lambda v: pd.NA if pd.isna(v) else _parse_bool(v))
        out = converted.astype("boolean" if col.nullable else "bool")
    else:  # str
        # infer_dtype scans in C; the per-value check runs only to name a bad row.
        all_text = pd.api.types.infer_dtype(present, skipna=False) in ("string", "empty")
        bad = np.zeros(len(present), bool) if all_text else ~present.map(_is_str).to_numpy(dtype=bool)
        if bad.any():
            row, value = _bad_row(present, bad)
            raise ArtifactError(source, f"{col.name}[row {row}]", f"a string ({col.doc})", value)
        if col.choices is not None:
            outside = ~present.isin(col.choices).to_numpy()
            if outside.any():
                row, value = _bad_row(present, outside)
                raise ArtifactError(source, f"{col.name}[row {row}]", f"one of {list(col.choices)}", value)
        out = series.astype(object).where(~nulls, None)
    return out


def _is_str(value: object) -> bool:
    return isinstance(value, str)


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}


def _parse_bool(value: object) -> bool | None:
    """True/False from a bool, 0/1 or 'true'/'false' (as CSV files spell them); else None."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _BOOL_TEXT.get(value.strip().lower())
    return None


# --------------------------------------------------------------------------- readers / writers

# A CSV cell a spreadsheet would run as a formula (OWASP, "CSV Injection"): a participant's
# User-Agent of "=HYPERLINK(...)" must reach the researcher as text. Such a cell gets a
# leading "'", which spreadsheets show as text, and so does one that already starts with
# "'" before such a character, so that reading back (load_table) is exact.
_FORMULA_START = frozenset("=+-@\t\r")


def _needs_quote(text: str) -> bool:
    i = 0
    while i < len(text) and text[i] == "'":
        i += 1
    return i < len(text) and text[i] in _FORMULA_START


def csv_safe(value: object) -> object:
    """``value`` as it may go into a CSV cell (strings only; numbers stay numbers)."""
    return "'" + value if isinstance(value, str) and _needs_quote(value) else value


def _csv_unquote(value: object) -> object:
    if isinstance(value, str) and value.startswith("'") and _needs_quote(value[1:]):
        return value[1:]
    return value


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def _csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    text = [c for c in df.columns if _is_text(df[c])]
    return df.assign(**{c: df[c].map(csv_safe) for c in text}) if text else df


def save_table(df: pd.DataFrame, path: str | Path, schema: TableSchema) -> Path:
    """Validate ``df`` against ``schema`` and write it atomically (.parquet or .csv)."""
    path = Path(path)
    df = schema.validate(df, source=path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            table = pa.Table.from_pandas(df, preserve_index=False)
            meta = dict(table.schema.metadata or {})
            meta[_META_ARTIFACT] = schema.name.encode()
            meta[_META_VERSION] = str(schema.version).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        elif suffix == ".csv":
            _csv_frame(df).to_csv(tmp, index=False)
        else:
            raise ArtifactError(path, None, "a file name ending in .parquet or .csv", path.name)
    return path


_ARROW = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}


def write_table_batches(
    path: str | Path, schema: TableSchema, batches: Iterable[list[dict[str, object]]]
) -> int:
    """Write row batches to a .parquet or .csv artifact, validating each; return the row count.

    For tables too big to hold at once (a response export of a million rows): only
    one batch is in memory. The file appears under its name only when complete.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ArtifactError(path, None, "a file name ending in .parquet or .csv", path.name)
    names = schema.column_names
    arrow_schema = pa.schema([pa.field(c.name, _ARROW[c.dtype], nullable=c.nullable) for c in schema.columns])
    arrow_schema = arrow_schema.with_metadata(
        {_META_ARTIFACT: schema.name.encode(), _META_VERSION: str(schema.version).encode()}
    )
    n = 0
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, arrow_schema) if suffix == ".parquet" else None
        try:
            first = True
            for batch in batches:
                df = schema.validate(pd.DataFrame(batch, columns=names), source=path)[names]
                if writer is not None:
                    writer.write_table(pa.Table.from_pandas(df, schema=arrow_schema, preserve_index=False))
                else:
                    _csv_frame(df).to_csv(tmp, mode="w" if first else "a", header=first, index=False)
                first = False
                n += len(df)
            if first and writer is None:
                pd.DataFrame(columns=names).to_csv(tmp, index=False)
        finally:
            if writer is not None:
                writer.close()
    return n


def load_table(path: str | Path, schema: TableSchema) -> pd.DataFrame:
    """Read a .parquet or .csv artifact and validate it; raise :class:`ArtifactError`."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, None, f"an existing {schema.name} file", has_value=False)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
            _check_parquet_meta(path, table.schema.metadata or {}, schema)
            df = table.to_pandas()
        elif suffix == ".csv":
            df = pd.read_csv(path, keep_default_na=True)
            text = [c for c in df.columns if _is_text(df[c])]
            df = df.assign(**{c: df[c].map(_csv_unquote) for c in text}) if text else df
        else:
            raise ArtifactError(path, None, "a file name ending in .parquet or .csv", path.name)
    except ArtifactError:
        raise
    except (OSError, pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, None, f"a readable {suffix} file ({exc})", has_value=False) from exc
    return schema.validate(df, source=path)


def _check_parquet_meta(path: Path, meta: dict[bytes, bytes], schema: TableSchema) -> None:
    # Files written by hand (pandas.to_parquet) carry no version; they are read as
    # the current version and validated column by column like any other.
    artifact = meta.get(_META_ARTIFACT)
    if artifact is not None and artifact.decode() != schema.name:
        raise ArtifactError(path, "artifact", f"a '{schema.name}' table", artifact.decode())
    version = meta.get(_META_VERSION)
    if version is not None and int(version) > schema.version:
        raise ArtifactError(
            path,
            "schema_version",
            f"<= {schema.version} (written by a newer release; upgrade this package)",
            int(version),
        )


def iter_schemas() -> Iterable[TableSchema]:
    return TABLES.values()


# --------------------------------------------------------------------------- the contracts

CORPUS_METADATA = TableSchema(
    name="corpus_metadata",
    version=1,
    doc="corpus/metadata.csv: one row per audio track of a corpus (optional for user corpora).",
    columns=(
        Column("track_id", "str", "unique id of the track"),
        Column("path", "str", "audio file path relative to the corpus directory"),
        Column("caption", "str", "free-text description, used as a text prompt", nullable=True),
        Column("tags", "str", "';'-separated concept tags", nullable=True),
    ),
    unique=(("track_id",),),
)

CORPUS_CONCEPTS = TableSchema(
    name="corpus_concepts",
    version=1,
    doc="corpus/concepts.csv: ground-truth concept values with the time span where each holds.",
    columns=(
        Column("track_id", "str", "track the concept belongs to"),
        Column("concept", "str", "concept name, e.g. 'instrument'"),
        Column("value", "str", "concept value, e.g. 'piano'"),
        Column("start_s", "float", "span start in seconds", min=0),
        Column("end_s", "float", "span end in seconds", min=0),
    ),
)

ACTIVATION_INDEX = TableSchema(
    name="activation_index",
    version=1,
    doc="acts/layer_<l>/index.parquet: which track/frame each activation row comes from.",
    columns=(
        Column("row", "int", "row number in the concatenated activation shards", min=0),
        Column("track_id", "str", "source track"),
        Column("frame", "int", "audio frame index within the track", min=0),
        Column("time_s", "float", "frame start time in seconds", min=0),
    ),
    unique=(("row",),),
)

FEATURES = TableSchema(
    name="features",
    version=1,
    doc="features/layer_<l>/features.parquet: one row per SAE latent with its statistics.",
    columns=(
        Column("feature_id", "int", "SAE latent index", min=0),
        Column("layer", "int", "transformer layer the SAE was trained on", min=0),
        Column("frequency", "float", "fraction of frames where the latent is active", min=0, max=1),
        Column("max_activation", "float", "largest activation observed", min=0),
        Column("n_tracks", "int", "distinct tracks among the top activations", min=0),
        Column("kept", "bool", "whether the feature passed the filters"),
        Column("filter_reason", "str", "why a feature was dropped (null if kept)", nullable=True),
    ),
    unique=(("layer", "feature_id"),),
)

EXAMPLES = TableSchema(
    name="examples",
    version=1,
    doc="features/layer_<l>/examples.parquet: top-activating example clips per kept feature.",
    columns=(
        Column("feature_id", "int", "SAE latent index", min=0),
        Column("layer", "int", "transformer layer", min=0),
        Column("rank", "int", "1 = strongest example", min=1),
        Column("track_id", "str", "source track"),
        Column("start_s", "float", "clip start in the source track (s)", min=0),
        Column("end_s", "float", "clip end in the source track (s)", min=0),
        Column("peak_time_s", "float", "time of the peak activation in the source (s)", min=0),
        Column("peak_activation", "float", "activation at the peak"),
        Column("path", "str", "clip file, relative to the examples.parquet directory"),
    ),
    unique=(("layer", "feature_id", "rank"),),
)

CONCEPTS = TableSchema(
    name="concepts",
    version=1,
    doc="concepts/concepts.parquet: best detector of each concept value per layer and method.",
    columns=(
        Column("layer", "int", "transformer layer", min=0),
        Column("concept", "str", "concept (a concepts.csv concept or a metadata.csv tag column)"),
        Column("value", "str", "the concept value detected, e.g. 'minor'"),
        Column(
            "method",
            "str",
            "sae: SAE feature; neuron: residual dimension; pca: PCA direction",
            choices=("sae", "neuron", "pca"),
        ),
        Column("unit", "int", "the chosen feature id, dimension or component (0 = first)", min=0),
        Column("sign", "float", "+1, or -1 where a neuron or direction detects by going negative"),
        Column("auroc", "float", "frame-level AUROC on the evaluation half of the tracks", min=0, max=1),
        Column(
            "auroc_select", "float", "AUROC on the selection half, where the unit was chosen", min=0, max=1
        ),
        Column("threshold", "float", "detection threshold (best F1 on the selection half)"),
        Column("precision", "float", "precision at the threshold, evaluation half", min=0, max=1),
        Column("recall", "float", "recall at the threshold, evaluation half", min=0, max=1),
        Column("n_positive", "int", "evaluation frames that have the value", min=0),
        Column("n_frames", "int", "evaluation frames", min=0),
        Column(
            "onset_error_ms",
            "float",
            "median |detected onset - true entry| (ms) where the value begins mid-track",
            nullable=True,
            min=0,
        ),
        Column("n_onsets", "int", "mid-track entries in the evaluation half behind onset_error_ms", min=0),
        Column(
            "window_auroc",
            "float",
            "the purity unit's AUROC over 1 s windows, evaluation half (activation max-pooled per window)",
            nullable=True,
            min=0,
            max=1,
        ),
        Column("purity_unit", "int", "the unit of best purity, chosen on the selection half", min=0),
        Column("purity_sign", "float", "+1, or -1 where that neuron or direction detects by going negative"),
        Column(
            "purity",
            "float",
            "share of the purity unit's top 50 evaluation windows that have the value",
            nullable=True,
            min=0,
            max=1,
        ),
        Column(
            "purity_unit_auroc", "float", "the purity unit's frame-level AUROC, evaluation half", min=0, max=1
        ),
        Column(
            "purity_chance",
            "float",
            "the value's share of evaluation windows (purity by chance)",
            min=0,
            max=1,
        ),
        Column(
            "purity_onset_error_ms",
            "float",
            "median |first frame of the purity unit over its window threshold - true entry| (ms)",
            nullable=True,
            min=0,
        ),
        Column("n_windows", "int", "evaluation windows (1 s)", min=0),
    ),
    unique=(("layer", "concept", "value", "method"),),
)

# The leading columns of the tables about SAE features matched to a concept value.
_MATCHED = (
    Column("layer", "int", "transformer layer", min=0),
    Column("concept", "str", "the concept the feature detects"),
    Column("value", "str", "its value, e.g. 'minor'"),
    Column("feature_id", "int", "SAE latent matched to the value", min=0),
    Column("auroc", "float", "the feature's held-out AUROC for the value", min=0, max=1),
)

LABELS_VS_TRUTH = TableSchema(
    name="labels_vs_truth",
    version=1,
    doc="concepts/labels_vs_truth.parquet: does each matched feature's top label name its concept?",
    columns=(
        *_MATCHED,
        Column("labeler", "str", "which labeler, e.g. 'descriptors'"),
        Column("label", "str", "the labeler's top label for the feature", nullable=True),
        Column("names_concept", "bool", "whether that label names the value"),
    ),
    unique=(("layer", "concept", "value", "labeler"),),
)

CLAP_VS_TRUTH = TableSchema(
    name="clap_vs_truth",
    version=1,
    doc="concepts/clap_vs_truth.parquet: does CLAP prefer each matched feature's concept to the best foil?",
    columns=(
        *_MATCHED,
        Column("n_clips", "int", "example clips of the feature that CLAP scored (0: filtered out)", min=0),
        Column("text", "str", "the value's words, e.g. 'minor key'"),
        Column("clap_true", "float", "mean CLAP similarity, clips to text", nullable=True, min=-1, max=1),
        Column("best_foil", "str", "the other value's words CLAP scored highest", nullable=True),
        Column(
            "clap_best_foil", "float", "mean similarity, clips to best_foil", nullable=True, min=-1, max=1
        ),
        Column("true_wins", "bool", "clap_true > clap_best_foil", nullable=True),
    ),
    unique=(("layer", "concept", "value"),),
)

STEERING_TRUTH = TableSchema(
    name="steering_truth",
    version=1,
    doc="steering_truth/steering_truth.parquet: does steering a matched feature put its concept in?",
    columns=(
        Column("layer", "int", "transformer layer steered", min=0),
        Column("feature_id", "int", "SAE latent matched to the value", min=0),
        Column("concept", "str", "the concept the feature detects"),
        Column("value", "str", "its value, e.g. 'minor'"),
        Column("strength", "float", "relative strength (x the feature's max activation)", min=0),
        Column("n", "int", "(prompt, seed) cases, each with a baseline, steered and control clip", min=1),
        *(
            Column(f"read_{who}", "float", f"share of {who} clips read as the value", min=0, max=1)
            for who in ("steered", "baseline", "control")
        ),
        *(
            Column(f"chose_{who}", "float", f"share of cases whose {who} clip is likeliest", min=0, max=1)
            for who in ("steered", "baseline", "control")
        ),
        Column("flatness_ratio", "float", "steered clips' mean spectral flatness / the baselines'", min=0),
        Column("reader_accuracy", "float", "the reader's held-out accuracy on corpus windows", nullable=True),
    ),
    unique=(("layer", "feature_id", "concept", "value", "strength"),),
)

LABELS = TableSchema(
    name="labels",
    version=1,
    doc="labels.parquet: candidate labels per feature from each labeler, with CLAP scores.",
    columns=(
        Column("feature_id", "int", "SAE latent index", min=0),
        Column("layer", "int", "transformer layer", min=0),
        Column("labeler", "str", "which labeler proposed it, e.g. 'descriptors'"),
        Column("label", "str", "the label text"),
        Column("confidence", "float", "labeler's confidence in [0, 1]", nullable=True, min=0, max=1),
        Column("clap_score", "float", "CLAP audio-text similarity", nullable=True, min=-1, max=1),
    ),
)

STEERING = TableSchema(
    name="steering",
    version=1,
    doc="steering/steering.parquet: steered generations and their unsteered baselines.",
    columns=(
        Column("feature_id", "int", "SAE latent steered along", min=0),
        Column("layer", "int", "layer where the direction is added", min=0),
        Column("prompt", "str", "text prompt shared by baseline and steered"),
        Column("seed", "int", "sampling seed shared by baseline and steered", min=0),
        Column(
            "strength",
            "float",
            "the --strengths value alpha: h <- h + alpha * d_f, or with relative (the row's relative "
            "column) h <- h + alpha * beta_f * d_f / s (beta_f: the feature's max activation, s: the "
            "SAE's input scale); vector_norm is the norm of what was added",
        ),
        Column("path", "str", "steered audio, relative to the steering directory"),
        Column("baseline_path", "str", "baseline audio, relative to the steering directory"),
        Column(
            "random_path",
            "str",
            "random-direction control (same norm), relative to the steering directory",
            nullable=True,
        ),
        Column(
            "steered_db",
            "float",
            "log-mel distance (dB, sae_core.clips.log_mel_distance) of the steered clip from its "
            "baseline; null in runs from before it was measured",
            nullable=True,
            min=0,
            optional=True,
        ),
        Column(
            "random_db",
            "float",
            "log-mel distance (dB) of the random-direction control from the baseline; null without one",
            nullable=True,
            min=0,
            optional=True,
        ),
    ),
)

# Every status a study session can have (study_app.models names them).
SESSION_STATUSES = (
    "active",
    "completed",
    "screened_out",
    "declined",
    "abandoned",
    "full",
    "returned",
    "timed_out",
    "rejected",
)
# Who answered: the export's data_source column (the report prints a banner for simulated data).
DATA_SOURCES = ("simulated", "participant")

RESPONSES = TableSchema(
    name="responses",
    # Version 2 renamed trial_kind to trial_type: it holds what the trial measures
    # (TrialKey.trial_type), while "kind" elsewhere is the layout. Version 1 files still read.
    version=2,
    renamed=(("trial_kind", "trial_type"),),
    doc="study_app export: one row per participant response (long format), joined with key.json "
    "and the session. docs/export.md is the data dictionary.",
    columns=(
        Column("schema_version", "int", "export format version", min=1),
        Column("study_id", "str", "study identifier"),
        Column("session_id", "str", "participant session identifier (not the browser's cookie)"),
        Column("participant", "str", "salted SHA-256 of the Prolific id (or of a random id when anonymous)"),
        Column(
            "prolific_pid",
            "str",
            "raw Prolific id; null unless exported with --include-prolific-ids",
            nullable=True,
        ),
        Column("list_id", "str", "trial list the session was assigned"),
        Column("trial_id", "str", "trial identifier from study.json"),
        Column(
            "trial_type",
            "str",
            "what the trial measures (TrialKey.trial_type)",
            choices=get_args(TrialType),
        ),
        Column("phase", "str", "study phase", choices=("screening", "practice", "main")),
        Column("position", "int", "0-based position of the trial in the session", min=0),
        Column("attempt", "int", "screening attempt (0 = first; other trials always 0)", min=0),
        Column("answer", "str", "chosen option id (null for ratings)", nullable=True),
        Column("answer_text", "str", "text of the chosen option (a label, 'Clip A', ...)", nullable=True),
        Column(
            "answer_role",
            "str",
            "comparison trials: role of the chosen clip (steered, baseline, random_direction, ...)",
            nullable=True,
        ),
        Column("rating", "float", "rating on the trial's scale", nullable=True),
        Column("confidence", "float", "confidence rating given with a choice", nullable=True),
        Column(
            "sliders",
            "str",
            "mushra and slider trials: JSON list, one object per candidate clip in screen order: "
            '{"clip", "role", "condition", "value"} (role: reference, anchor or condition)',
            nullable=True,
            optional=True,
        ),
        Column(
            "problems",
            "str",
            "what the participant reported with 'Problem with the audio?' on this trial: a JSON list "
            'of {"reason", "text"} (reason: silent, level, distorted or other); null when none',
            nullable=True,
            optional=True,
        ),
        Column(
            "comment",
            "str",
            "the participant's optional comment on this trial (study.trial_comments), at most 500 "
            "characters; null when none was written",
            nullable=True,
            optional=True,
        ),
        Column(
            "correct",
            "bool",
            "answer matches the key (null when the trial has no right answer)",
            nullable=True,
        ),
        Column("correct_option", "str", "option id the key marks correct", nullable=True),
        Column("correct_text", "str", "text of the correct option (the target label)", nullable=True),
        Column(
            "n_options",
            "int",
            "how many options the trial offered (label choice: n_foils + 1; steering: 2 or 3 clips): "
            "chance is 1 / n_options; null on trials without options (ratings, sliders)",
            nullable=True,
            min=1,
            optional=True,
        ),
        Column("rt_ms", "float", "reaction time from answer enabled to submit (ms)", min=0),
        Column("play_counts", "str", "JSON object: clip id -> times played to the end"),
        Column("client_ts", "str", "browser time of the submit, ISO 8601", nullable=True),
        Column("server_ts", "str", "server receive time, ISO 8601 UTC"),
        Column("feature_id", "int", "feature the trial is about", nullable=True, min=0),
        Column("layer", "int", "layer of that feature", nullable=True, min=0),
        Column("labeler", "str", "labeler of the rated/target label", nullable=True),
        Column("label", "str", "the target (choice) or rated (rating) label", nullable=True),
        Column("clap_score", "float", "CLAP score of the target label", nullable=True),
        Column("strength", "float", "steering strength", nullable=True),
        Column("prompt", "str", "steering prompt", nullable=True),
        Column("seed", "int", "steering sampling seed", nullable=True, min=0),
        Column("item", "str", "own stimuli: the item of the conditions CSV", nullable=True, optional=True),
        Column(
            "condition",
            "str",
            "abx trials: the condition told apart from the item's reference",
            nullable=True,
            optional=True,
        ),
        Column(
            "check",
            "str",
            "attention/screening check kind (instructed, identical_pair, huggins, antiphase)",
            nullable=True,
        ),
        Column(
            "session_status",
            "str",
            "final or current session status (`full`: the list filled while the session was setting up; "
            "`returned`, `timed_out`, `rejected`: so marked on Prolific, answers kept)",
            choices=SESSION_STATUSES,
        ),
        Column(
            "screening_passed",
            "bool",
            "the session's headphone screening result (null if none)",
            nullable=True,
        ),
        Column(
            "attention_correct",
            "float",
            "fraction of the session's attention trials answered correctly (null if none answered)",
            nullable=True,
            min=0,
            max=1,
        ),
        Column("session_started", "str", "session start, ISO 8601 UTC"),
        Column("session_finished", "str", "session end, ISO 8601 UTC (null while active)", nullable=True),
        Column("duration_s", "float", "session_finished - session_started in seconds", nullable=True, min=0),
        Column("user_agent", "str", "browser user agent"),
        Column("screen", "str", "screen size reported by the browser, e.g. 1920x1080"),
        Column(
            "served_ts",
            "str",
            "when the server first sent this trial to the browser, ISO 8601 UTC (null: not recorded)",
            nullable=True,
            optional=True,
        ),
        Column(
            "answer_after_s",
            "float",
            "server_ts - served_ts in seconds: the server's own measure of time on the trial",
            nullable=True,
            optional=True,
            min=0,
        ),
        Column(
            "audio_s",
            "float",
            "total duration of the clips the trial required, seconds",
            nullable=True,
            optional=True,
            min=0,
        ),
        Column(
            "clips_unfetched",
            "int",
            "required clips the server had not served in full to this session when it answered "
            "(before study_app migration 0008: never fetched at all)",
            nullable=True,
            optional=True,
            min=0,
        ),
        Column(
            "questionnaire",
            "str",
            "the session's questionnaire answers as a JSON object, field id -> answer (null until answered)",
            nullable=True,
            optional=True,
        ),
        Column(
            "data_source",
            "str",
            "`simulated`: a bot of `study-app simulate` (marked by that command); `participant`: anyone "
            "else (sessions from before study_app migration 0010 read as participants)",
            choices=DATA_SOURCES,
            nullable=True,
            optional=True,
        ),
        Column(
            "package_sha256",
            "str",
            "SHA-256 of the study package's canonical manifest (study.json), as its key.json records it",
            nullable=True,
            optional=True,
        ),
        Column("software_version", "str", "release of the app that wrote it", nullable=True, optional=True),
        Column(
            "exported_at", "str", "when the export was written, ISO 8601 UTC", nullable=True, optional=True
        ),
    ),
    unique=(("session_id", "trial_id", "attempt"),),
)

#: The reasons a participant can give under "Problem with the audio?" (the page's list).
PROBLEM_REASONS = ("silent", "level", "distorted", "other")

PROBLEM_REPORTS = TableSchema(
    name="problem_reports",
    version=1,
    doc="study_app export --table problem_reports: one row per 'Problem with the audio?' report, "
    "answered trials or not (a participant who gave up after a silent clip left no response row).",
    columns=(
        # Who and which trial: the same columns as the responses export's, to join on.
        *(
            c
            for c in RESPONSES.columns
            if c.name
            in (
                "schema_version",
                "study_id",
                "session_id",
                "participant",
                "list_id",
                "trial_id",
                "trial_type",
                "phase",
            )
        ),
        Column("clips", "str", "JSON list of the trial's clip ids (references, then candidates)"),
        Column("reason", "str", "the reason picked", choices=PROBLEM_REASONS),
        Column("text", "str", "the participant's own words (at most 500 characters, may be empty)"),
        Column(
            "answered",
            "bool",
            "whether the session has a stored response to this trial (false: reported, never answered)",
        ),
        Column("client_ts", "str", "browser time of the report, ISO 8601", nullable=True),
        Column("server_ts", "str", "server receive time of the report, ISO 8601 UTC"),
        Column("session_status", "str", "final or current session status", choices=SESSION_STATUSES),
        Column("data_source", "str", "`simulated` (a bot) or `participant`", choices=DATA_SOURCES),
    ),
)

TABLES: dict[str, TableSchema] = {
    s.name: s
    for s in (
        CORPUS_METADATA,
        CORPUS_CONCEPTS,
        ACTIVATION_INDEX,
        FEATURES,
        EXAMPLES,
        CONCEPTS,
        LABELS_VS_TRUTH,
        CLAP_VS_TRUTH,
        STEERING_TRUTH,
        LABELS,
        STEERING,
        RESPONSES,
        PROBLEM_REPORTS,
    )
}
