"""A researcher's own stimuli: a folder of audio and a CSV of its conditions (issue 36).

The CSV has one row per clip, with the columns

* ``item``: the piece of music (one MUSHRA trial per item and list);
* ``condition``: what was done to it ("original", "codec_64k", ...), unique within the item;
* ``file``: the audio file, relative to the CSV (or absolute);
* ``role`` (optional column, empty = ``condition``): ``reference`` (exactly one per item: the
  open reference, and the hidden one among the candidates), ``anchor`` (a MUSHRA anchor of
  your own) or ``condition`` (a condition under test).

:func:`load_conditions` reads and checks it, naming the file, the row (as a spreadsheet
numbers it: the header is row 1) and the column of the first problem; it decodes every
clip once, so an unreadable, silent or clipped file is named by its row too.
"""

from __future__ import annotations

import csv
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from artifact_schemas import ArtifactError
from artifact_schemas.errors import AudioError
from artifact_schemas.study import STIMULUS_ROLES, StimulusRole
from stimuli_builder.audio_prep import read_source

ROLES = STIMULUS_ROLES
REQUIRED_COLUMNS = ("item", "condition", "file")
COLUMNS = (*REQUIRED_COLUMNS, "role")
# Clips of one item longer than the shortest by more than this fraction get a warning: a
# MUSHRA trial cuts all its clips to the shortest, so the rest of the longer ones is lost.
LENGTH_TOLERANCE = 0.10


@dataclass(frozen=True)
class Stimulus:
    """One row of the CSV: a clip of an item in one condition."""

    item: str
    condition: str
    role: StimulusRole
    path: Path
    row: int
    duration_s: float
    channels: int = 1


@dataclass
class Item:
    """A piece of music: its reference, anchors and conditions under test (CSV order)."""

    name: str
    reference: Stimulus
    anchors: list[Stimulus]
    conditions: list[Stimulus]

    @property
    def key(self) -> str:
        return self.name

    @property
    def stimuli(self) -> list[Stimulus]:
        return [self.reference, *self.anchors, *self.conditions]


@dataclass
class OwnStimuli:
    """The checked CSV: its items in order of first appearance, and what it warns about."""

    csv: Path
    items: list[Item]
    warnings: list[str]

    @property
    def inputs(self) -> list[Path]:
        """The CSV and every clip it names (the package's run.json checksums them)."""
        return [self.csv, *sorted({s.path for item in self.items for s in item.stimuli})]


def load_conditions(csv_path: str | Path, *, reserved: Collection[str] = ()) -> OwnStimuli:
    """Read and check the conditions CSV ``csv_path``.

    ``reserved`` are condition names the builder makes itself (``mushra.anchors``), which a
    row may not use. Raises :class:`ArtifactError` naming the CSV, the row and the column.
    """
    csv_path = Path(csv_path)
    rows = _read_rows(csv_path)
    seen: dict[tuple[str, str], int] = {}
    by_item: dict[str, list[Stimulus]] = {}
    for n, row in rows:
        stimulus = _stimulus(csv_path, n, row, reserved)
        earlier = seen.get((stimulus.item, stimulus.condition))
        if earlier is not None:
            raise ArtifactError(
                csv_path,
                f"row {n}, column condition",
                f"a condition not yet given for item {stimulus.item!r} (row {earlier} has it)",
                stimulus.condition,
            )
        seen[(stimulus.item, stimulus.condition)] = n
        by_item.setdefault(stimulus.item, []).append(stimulus)
    if not by_item:
        raise ArtifactError(csv_path, None, "a header row and at least one row per clip", has_value=False)
    items = [_item(csv_path, name, stimuli) for name, stimuli in by_item.items()]
    return OwnStimuli(csv_path, items, _warnings(csv_path, items))


def _read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """The data rows as (spreadsheet row number, column -> stripped cell); blank rows skipped."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(csv_path, None, f"a readable UTF-8 CSV file ({exc})", has_value=False) from exc
    if not table:
        raise ArtifactError(csv_path, "row 1", f"a header row with the columns {', '.join(COLUMNS)}", "")
    header = [cell.strip().casefold() for cell in table[0]]
    for name in header:
        if name not in COLUMNS:
            raise ArtifactError(
                csv_path, f"row 1, column {name or '(empty)'}", f"only the columns {', '.join(COLUMNS)}", name
            )
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header):
        raise ArtifactError(
            csv_path,
            "row 1",
            f"a header with the columns {', '.join(COLUMNS)} (role optional), each once",
            header,
        )
    rows = []
    for n, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            raise ArtifactError(
                csv_path, f"row {n}", f"at most {len(header)} cells (the header's columns)", cells
            )
        rows.append((n, {c: (cells[i].strip() if i < len(cells) else "") for i, c in enumerate(header)}))
    return rows


def _stimulus(csv_path: Path, n: int, row: dict[str, str], reserved: Collection[str]) -> Stimulus:
    for column in REQUIRED_COLUMNS:
        if not row[column]:
            raise ArtifactError(csv_path, f"row {n}, column {column}", "a value", row[column])
    role = row.get("role", "").casefold() or "condition"
    if role not in ROLES:
        raise ArtifactError(csv_path, f"row {n}, column role", f"one of {', '.join(ROLES)} (or empty)", role)
    if row["condition"] in reserved:
        raise ArtifactError(
            csv_path,
            f"row {n}, column condition",
            f"a name other than the anchors the builder makes ({', '.join(sorted(reserved))}, "
            "from mushra.anchors)",
            row["condition"],
        )
    path = Path(row["file"])
    path = path if path.is_absolute() else csv_path.parent / path
    where = f"row {n}, column file"
    if not path.is_file():
        raise ArtifactError(csv_path, where, f"an audio file (looked for {path.absolute()})", row["file"])
    try:
        info = sf.info(str(path))
        read_source(path, info.samplerate)  # decodes it all: silent, clipped or cut-off files fail here
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ArtifactError(csv_path, where, f"readable audio ({exc})", row["file"]) from exc
    except AudioError as exc:
        raise ArtifactError(csv_path, where, f"usable audio, not {exc.reason}", row["file"]) from exc
    return Stimulus(
        row["item"], row["condition"], role, path.resolve(), n, float(info.duration), int(info.channels)
    )


def _item(csv_path: Path, name: str, stimuli: list[Stimulus]) -> Item:
    rows = ", ".join(str(s.row) for s in stimuli)
    references = [s for s in stimuli if s.role == "reference"]
    if len(references) != 1:
        raise ArtifactError(
            csv_path,
            f"rows {rows}, column role",
            f"exactly one reference for item {name!r}",
            f"{len(references)} references",
        )
    conditions = [s for s in stimuli if s.role == "condition"]
    if not conditions:
        raise ArtifactError(
            csv_path,
            f"rows {rows}, column role",
            f"at least one condition under test for item {name!r}",
            "none",
        )
    return Item(name, references[0], [s for s in stimuli if s.role == "anchor"], conditions)


def _warnings(csv_path: Path, items: list[Item]) -> list[str]:
    warnings = []
    for item in items:
        durations = [s.duration_s for s in item.stimuli]
        if max(durations) > min(durations) * (1 + LENGTH_TOLERANCE):
            warnings.append(
                f"{csv_path.name}: item {item.name!r} has clips of {min(durations):.2f} to "
                f"{max(durations):.2f} s (rows {', '.join(str(s.row) for s in item.stimuli)}); its "
                "MUSHRA trials cut every clip to the shortest"
            )
    rows_of: dict[Path, list[int]] = {}
    for item in items:
        for s in item.stimuli:
            rows_of.setdefault(s.path, []).append(s.row)
    for path, rows in rows_of.items():
        if len(rows) > 1:  # a copy-paste slip, or a condition meant to be the reference itself
            warnings.append(
                f"{csv_path.name}: rows {', '.join(map(str, rows))} name the same file {path.name}; "
                "participants rate the same audio under different names (the hidden reference is "
                "added by the builder, not listed)"
            )
    stereo = [s for item in items for s in item.stimuli if s.channels > 1]
    if stereo:
        warnings.append(
            f"{csv_path.name}: {'rows' if len(stereo) > 1 else 'row'} "
            f"{', '.join(str(s.row) for s in stereo)} {'are' if len(stereo) > 1 else 'is'} not mono "
            f"({', '.join(sorted({f'{s.channels} channels' for s in stereo}))}); every clip is played "
            "mono, the mean of its channels, so differences between the channels are not heard"
        )
    every = {s.condition for item in items for s in item.stimuli if s.role != "reference"}
    for item in items:
        lacking = sorted(every - {s.condition for s in item.stimuli})
        if lacking:
            warnings.append(
                f"{csv_path.name}: item {item.name!r} lacks the conditions {lacking} that other items "
                "have; its MUSHRA trials rate the ones it has"
            )
    return warnings
