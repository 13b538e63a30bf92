"""Record residual-stream activations of a corpus, sharded, resumable, and splittable by rank.

Output (``--out runs/R/acts``)::

    extract.json                  settings + track list; a rerun must match them
    progress/shard_00007.json     written last for each finished shard (resume marker)
    progress/shard_00007.parquet  which track/frame each row of that shard is
    layer_<l>/shard_00007.safetensors   "activations": [rows, d_model]
    layer_<l>/index.parquet, layer_<l>/meta.json, run.json   (once every shard is done)

A shard is a fixed group of tracks, so what a shard holds does not depend on how many
processes share the work: under ``torchrun`` rank r computes shards r, r+W, r+2W, ...
(data parallelism: each rank reads its own tracks, so the forward splits; its marker
names the rank) and the result is byte-identical to a single-process run with the same
``--threads``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from safetensors.torch import save_file

from artifact_schemas import (
    ACTIVATION_INDEX,
    CORPUS_METADATA,
    ArtifactError,
    FieldError,
    atomic_path,
    load_table,
    recorded_run,
    save_table,
    write_text_atomic,
)
from artifact_schemas.settings import check_settings, setting
from sae_core.audio import AUDIO_SUFFIXES, AudioError, load_mono
from sae_core.layers import LayerChoice, check_layers, resolve_layers
from sae_core.models import BACKENDS, MusicModel, load_model
from sae_core.runtime import barrier, init_distributed, rank, set_threads, world_size
from sae_core.sae.data import ACTS_KEY, LAYER_META

log = logging.getLogger(__name__)
TextCondition = Literal["empty", "caption"]


@dataclass(frozen=True)
class TrackFile:
    """An audio file of a corpus as extraction reads it (the synthetic corpus's own
    ``synth.CorpusTrack`` also knows its concepts)."""

    track_id: str
    path: str  # absolute
    caption: str = ""


# Fields of ExtractConfig that say where and how a run happens, not what it extracts:
# they stay out of extract.json, so a resumed run may change them.
_RUNNING = ("corpus", "out", "device", "threads")


@dataclass
class ExtractConfig:
    """What ``extract_activations`` records; validated on construction, naming the field."""

    model: str
    layers: LayerChoice
    """Decoder blocks (0-based), or ``paper``: resolved once loaded (``layers.resolve_layers``)."""
    backend: str = setting("transformers", choices=BACKENDS)
    """Which MusicGen implementation runs the model: transformers or audiocraft."""
    text_condition: TextCondition = setting("empty", choices=("empty", "caption"))
    """What the model is conditioned on: empty text, or each track's caption (metadata.csv)."""
    window_seconds: float = setting(10.0, gt=0)
    """Audio is cut into windows this long, each teacher-forced from a fresh context."""
    batch_seconds: float = setting(40.0, gt=0)
    """Audio seconds per forward pass (windows of equal length are batched)."""
    tracks_per_shard: int = setting(8, ge=1)
    """Tracks per resumable shard (an interrupted run keeps its finished shards)."""
    dtype: Literal["float16", "float32"] = setting("float16", choices=("float16", "float32"))
    """Storage type of the activations."""
    keep_fraction: float = setting(1.0, gt=0, le=1)
    """Share of each window's frames stored (issue 22: the paper's corpus at every frame is
    terabytes). The kept frames are drawn per window from (keep_seed, track, window start),
    so they do not depend on batching, sharding or ranks; the index keeps each row's time."""
    keep_seed: int = setting(0, ge=0)
    """Seed of the frames keep_fraction keeps."""
    bf16_forward: bool = False
    """Run the decoder under bf16 autocast (the fast path on GPUs; stored rows are cast to ``dtype``)."""
    corpus: Path | None = None
    """The corpus directory (needed by ``extract_activations``)."""
    out: Path | None = None
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:1 ..."""
    threads: int | None = setting(None, ge=1)
    """CPU threads (the same value gives the same bytes)."""

    def __post_init__(self) -> None:
        check_settings(self)
        self.layers = check_layers(self.layers)
        if self.corpus is not None and not Path(self.corpus).is_dir():
            raise FieldError("corpus", f"{self.corpus}: no such directory")

    def layer_numbers(self) -> list[int]:
        if self.layers == "paper":
            raise FieldError("layers", "'paper' is resolved by extract_activations once the model is loaded")
        return self.layers

    def settings(self) -> dict[str, Any]:
        """What was extracted (extract.json, run.json): every field but where it ran."""
        return {k: v for k, v in asdict(self).items() if k not in _RUNNING}


@dataclass
class ExtractResult:
    shards_total: int
    shards_computed: int
    shards_reused: int
    rows: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    finished: bool = True
    layers: list[int] = field(default_factory=list)
    d_model: int = 0
    rank: int = 0


def extract_activations(cfg: ExtractConfig, progress: bool = True) -> ExtractResult:
    """The ``extract`` stage: load ``cfg.model``, extract ``cfg.corpus`` into ``cfg.out``.

    Joins a ``torchrun`` launch when there is one (each rank takes every N-th shard);
    rank 0 writes run.json once every shard is there. ``result.finished`` is False when
    shards are missing (another rank failed): rerunning the same config finishes them.
    """

    corpus, out = cfg.corpus, cfg.out
    if corpus is None or out is None:
        raise FieldError("corpus" if corpus is None else "out", "is needed to extract")
    set_threads(cfg.threads)
    device = init_distributed(cfg.device)
    model = load_model(cfg.model, backend=cfg.backend, device=device)
    cfg = replace(cfg, layers=resolve_layers(cfg.layers, model.n_layers))  # a copy: the caller's stays
    # Only rank 0 records the run, and only once every shard is there.
    recording = (
        recorded_run(out, "extract", config=cfg.settings(), inputs=[corpus])
        if rank() == 0
        else contextlib.nullcontext()
    )
    with recording:
        result = extract(model, cfg, corpus, out, progress=progress)
        if rank() == 0 and not result.finished:
            # Raised inside the record, so that an unfinished run writes no run.json.
            raise ValueError(f"some shards are missing in {cfg.out}; rerun the same command to finish")
    return result


def list_tracks(corpus: str | Path) -> list[TrackFile]:
    """Tracks of a corpus: from ``metadata.csv`` when present, else every audio file (sorted)."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise ArtifactError(corpus, None, "a corpus directory of audio files", has_value=False)
    meta_path = corpus / "metadata.csv"
    if meta_path.is_file():
        meta = load_table(meta_path, CORPUS_METADATA)
        return [
            TrackFile(
                str(r.track_id),
                str((corpus / str(r.path)).resolve()),
                str(r.caption) if isinstance(r.caption, str) else "",
            )
            for r in meta.itertuples()
        ]
    files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ArtifactError(corpus, None, f"audio files ({', '.join(AUDIO_SUFFIXES)})", has_value=False)
    return [TrackFile(str(p.relative_to(corpus).with_suffix("")), str(p.resolve())) for p in files]


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}"


def extract(
    model: MusicModel,
    cfg: ExtractConfig,
    corpus: str | Path,
    out: str | Path,
    progress: bool = True,
) -> ExtractResult:
    """Extract activations of every track at ``cfg.layers`` into ``out`` (see module doc)."""
    out = Path(out)
    for layer in cfg.layer_numbers():
        model._check_layer(layer)
    tracks = list_tracks(corpus)
    me, world = rank(), world_size()
    settings = {"config": cfg.settings(), "tracks": [asdict(t) for t in tracks]}
    settings_path = out / "extract.json"
    if me == 0:
        if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
            raise ValueError(
                f"{out} holds activations extracted with other settings or another corpus "
                f"(see {settings_path}); use a new --out, or delete it to start over"
            )
        write_text_atomic(settings_path, json.dumps(settings, indent=2) + "\n")
    barrier()

    per = max(1, cfg.tracks_per_shard)
    shards = [tracks[i : i + per] for i in range(0, len(tracks), per)]
    mine = [i for i in range(len(shards)) if i % world == me]
    done = {i for i in mine if (out / "progress" / f"{_shard_name(i)}.json").is_file()}
    computed = 0
    with Progress(disable=not progress or me != 0, transient=True) as bar:
        task = bar.add_task(f"extracting layers {cfg.layers}", total=len(mine), completed=len(done))
        for i in mine:
            if i in done:
                continue
            _extract_shard(model, cfg, shards[i], i, out)
            computed += 1
            bar.update(task, advance=1)
    barrier()
    result = ExtractResult(len(shards), computed, len(done), 0, layers=cfg.layer_numbers())
    result.d_model, result.rank = model.d_model, me
    if me == 0:
        result = _finalise(model, cfg, out, len(shards), result)
    barrier()
    return result


def _windows(audio: np.ndarray, model: MusicModel, window_seconds: float) -> list[tuple[int, np.ndarray]]:
    """(first frame, samples) of consecutive windows; each a whole number of codec frames."""
    hop = round(model.sample_rate / model.frame_rate)
    frames_per_window = max(1, round(window_seconds * model.frame_rate))
    size = frames_per_window * hop
    return [(start // hop, audio[start : start + size]) for start in range(0, len(audio), size)]


Window = tuple[TrackFile, int, np.ndarray]  # (track, first frame, samples)


def window_batches(
    model: MusicModel,
    tracks: Sequence[TrackFile],
    window_seconds: float,
    batch_seconds: float,
    skipped: list[dict[str, str]],
) -> Iterator[list[Window]]:
    """The tracks' windows in forward batches of ``batch_seconds``, read one track at a time.

    Consecutive windows of equal length share a batch; a track's short last window goes
    alone. Unreadable tracks are logged, listed in ``skipped`` and left out. Extraction
    and online training (``sae.online``) cut and batch the audio through this one function.
    """
    per_batch = max(1, int(batch_seconds // window_seconds))
    batch: list[Window] = []
    for track in tracks:
        try:
            audio = load_mono(track.path, model.sample_rate)
        except AudioError as exc:
            log.warning("skipping %s", exc)
            skipped.append({"track_id": track.track_id, "path": track.path, "error": str(exc)})
            continue
        for first, samples in _windows(audio, model, window_seconds):
            if batch and (len(batch) >= per_batch or len(batch[0][2]) != len(samples)):
                yield batch
                batch = []
            batch.append((track, first, samples))
    if batch:
        yield batch


def batch_residuals(
    model: MusicModel,
    batch: list[Window],
    layers: list[int],
    text_condition: TextCondition,
    bf16_forward: bool = False,
) -> tuple[dict[int, torch.Tensor], int]:
    """One forward batch: its windows encoded and teacher-forced, the residuals of ``layers``
    (``[windows, frames, d_model]``), and the frames per window. ``bf16_forward`` runs the
    decoder (not the codec) under bf16 autocast."""
    codes = model.encode_audio(torch.from_numpy(np.stack([samples for _, _, samples in batch])))
    texts = [t.caption for t, _, _ in batch] if text_condition == "caption" else None
    autocast: Any = contextlib.nullcontext()
    if bf16_forward:
        device_type = next(model.decoder_layers()[0].parameters()).device.type
        autocast = torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    with autocast:
        return model.residuals(codes, layers, texts), codes.shape[-1]


def kept_frames(cfg: ExtractConfig, track_id: str, first: int, n_frames: int) -> np.ndarray:
    """Which of a window's ``n_frames`` frames are stored (sorted offsets; all at 1.0).

    At least one per window, ``round(keep_fraction * n_frames)`` in all, without replacement."""
    if cfg.keep_fraction >= 1:
        return np.arange(n_frames)
    n_keep = max(1, round(cfg.keep_fraction * n_frames))
    key = [cfg.keep_seed, zlib.crc32(track_id.encode()), first]
    return np.sort(np.random.default_rng(key).choice(n_frames, size=n_keep, replace=False))


def _extract_shard(
    model: MusicModel, cfg: ExtractConfig, tracks: Sequence[TrackFile], shard: int, out: Path
) -> None:
    rows: dict[int, list[torch.Tensor]] = {layer: [] for layer in cfg.layer_numbers()}
    index: list[pd.DataFrame] = []
    skipped: list[dict[str, str]] = []
    forward_passes = 0
    for batch in window_batches(model, tracks, cfg.window_seconds, cfg.batch_seconds, skipped):
        forward_passes += 1
        acts, n_frames = batch_residuals(
            model, batch, cfg.layer_numbers(), cfg.text_condition, cfg.bf16_forward
        )
        kept = [kept_frames(cfg, track.track_id, first, n_frames) for track, first, _ in batch]
        # Row i * n_frames + f of the flattened batch is window i's frame f.
        flat = None
        if cfg.keep_fraction < 1:
            flat = torch.from_numpy(np.concatenate([i * n_frames + k for i, k in enumerate(kept)]))
        for layer in cfg.layer_numbers():
            layer_rows = acts[layer].reshape(-1, model.d_model)
            if flat is not None:
                layer_rows = layer_rows[flat.to(layer_rows.device)]
            rows[layer].append(layer_rows.to(getattr(torch, cfg.dtype)).cpu())
        for (track, first, _), offsets in zip(batch, kept, strict=True):
            frames = first + offsets
            index.append(
                pd.DataFrame(
                    {
                        "track_id": track.track_id,
                        "frame": frames,
                        "time_s": frames / model.frame_rate,
                    }
                )
            )
    name = _shard_name(shard)
    for layer in cfg.layer_numbers():
        data = (
            torch.cat(rows[layer])
            if rows[layer]
            else torch.zeros(0, model.d_model, dtype=getattr(torch, cfg.dtype))
        )
        with atomic_path(out / f"layer_{layer}" / f"{name}.safetensors") as tmp:
            save_file({ACTS_KEY: data.contiguous()}, str(tmp))
    frame_index = (
        pd.concat(index, ignore_index=True)
        if index
        else pd.DataFrame(
            {
                "track_id": pd.Series([], dtype=object),
                "frame": pd.Series([], dtype="int64"),
                "time_s": pd.Series([], dtype="float64"),
            }
        )
    )
    frame_index.insert(0, "row", np.arange(len(frame_index)))
    save_table(frame_index, out / "progress" / f"{name}.parquet", ACTIVATION_INDEX)
    # The marker goes last: a shard without it is recomputed on the next run.
    marker = {
        "shard": shard,
        "rows": len(frame_index),
        "tracks": [t.track_id for t in tracks],
        "skipped": skipped,
        "rank": rank(),  # who computed it, and with how many forwards: the split is auditable
        "forward_passes": forward_passes,
    }
    write_text_atomic(out / "progress" / f"{name}.json", json.dumps(marker, indent=2) + "\n")


def _finalise(
    model: MusicModel, cfg: ExtractConfig, out: Path, n_shards: int, result: ExtractResult
) -> ExtractResult:
    markers = []
    for i in range(n_shards):
        path = out / "progress" / f"{_shard_name(i)}.json"
        if not path.is_file():
            result.finished = False
            return result
        markers.append(json.loads(path.read_text()))
    parts = []
    offset = 0
    shards_meta = []
    for marker in markers:
        name = _shard_name(marker["shard"])
        if marker["rows"] == 0:
            continue
        part = load_table(out / "progress" / f"{name}.parquet", ACTIVATION_INDEX)
        part["row"] = part["row"] + offset
        offset += len(part)
        parts.append(part)
        shards_meta.append({"file": f"{name}.safetensors", "rows": int(marker["rows"])})
    if not parts:
        raise ValueError(f"no audio could be read from the corpus; {len(markers)} shards hold no rows")
    index = pd.concat(parts, ignore_index=True)
    for layer in cfg.layer_numbers():
        layer_dir = out / f"layer_{layer}"
        save_table(index, layer_dir / "index.parquet", ACTIVATION_INDEX)
        meta: dict[str, Any] = {
            "schema_version": 1,
            "layer": layer,
            "d_model": model.d_model,
            "dtype": cfg.dtype,
            "rows": offset,
            "shards": shards_meta,
            "model": cfg.model,
            "backend": cfg.backend,
            "frame_rate": model.frame_rate,
            "sample_rate": model.sample_rate,
            "text_condition": cfg.text_condition,
            "window_seconds": cfg.window_seconds,
            "keep_fraction": cfg.keep_fraction,
            "keep_seed": cfg.keep_seed,
            "position": "post-block residual; row f = the position that reads frame f's first codebook",
        }
        write_text_atomic(layer_dir / LAYER_META, json.dumps(meta, indent=2) + "\n")
    result.rows = offset
    result.skipped = [s for m in markers for s in m["skipped"]]
    return result
