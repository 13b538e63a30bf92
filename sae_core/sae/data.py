"""Activation sources for SAE training: in memory, or streamed from extraction shards.

Streaming holds at most ``buffer_shards`` shards in memory at once, so a layer's
activations may be larger than RAM; rows are shuffled within that buffer and shard
order is reshuffled every epoch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from torch import Tensor

from artifact_schemas import ACTIVATION_INDEX, ArtifactError, load_table

Split = Literal["train", "holdout"]
LAYER_META = "meta.json"
ACTS_KEY = "activations"


class ActivationSource(Protocol):
    d_in: int

    def count(self, split: Split) -> int: ...

    def batches(self, batch_size: int, seed: int, epoch: int, split: Split) -> Iterator[Tensor]: ...

    def sample(self, n: int, seed: int) -> Tensor: ...


def _holdout_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    return rng.random(n) < fraction


@dataclass
class InMemoryActivations:
    """Rows of a [N, d] tensor; a random ``holdout_fraction`` of rows is held out."""

    data: Tensor
    holdout_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        self.d_in = int(self.data.shape[1])
        self._holdout = torch.from_numpy(_holdout_rows(len(self.data), self.holdout_fraction, self.seed))

    def _rows(self, split: Split) -> Tensor:
        mask = self._holdout if split == "holdout" else ~self._holdout
        return self.data[mask]

    def count(self, split: Split) -> int:
        return int(self._holdout.sum()) if split == "holdout" else len(self.data) - int(self._holdout.sum())

    def batches(self, batch_size: int, seed: int, epoch: int, split: Split) -> Iterator[Tensor]:
        rows = self._rows(split)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for start in range(0, len(rows) - batch_size + 1, batch_size):
            yield rows[order[start : start + batch_size]]
        if split == "holdout" and len(rows) % batch_size:
            yield rows[order[len(rows) - len(rows) % batch_size :]]

    def sample(self, n: int, seed: int) -> Tensor:
        rows = self._rows("train")
        pick = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n]
        return rows[pick].float()


class ShardedActivations:
    """One layer's extraction output: ``meta.json``, ``shard_*.safetensors``, ``index.parquet``.

    Whole *tracks* are held out (a stable hash of the track id picks them), so held-out
    FVU measures generalisation to unseen music, not to unseen frames of seen music.
    """

    def __init__(
        self,
        layer_dir: str | Path,
        holdout_fraction: float = 0.05,
        buffer_shards: int = 4,
        index: pd.DataFrame | None = None,
    ):
        """``index``: the layer's ``index.parquet`` when the caller has already loaded it."""
        self.dir = Path(layer_dir)
        meta_path = self.dir / LAYER_META
        if not meta_path.is_file():
            raise ArtifactError(
                self.dir,
                None,
                f"an activation directory with {LAYER_META} (written by 'sae-core extract')",
                has_value=False,
            )
        try:
            self.meta = json.loads(meta_path.read_text())
            self.d_in = int(self.meta["d_model"])
            self.shards: list[dict[str, int | str]] = list(self.meta["shards"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                meta_path, None, f"valid activation metadata ({exc})", has_value=False
            ) from exc
        if not self.shards:
            raise ArtifactError(meta_path, "shards", "at least one shard", [])
        self.buffer_shards = max(1, buffer_shards)
        if index is None:
            index = load_table(self.dir / "index.parquet", ACTIVATION_INDEX)
        tracks = index["track_id"].to_numpy()
        unique = np.unique(tracks)
        held = {t for t in unique if stable_fraction(str(t)) < holdout_fraction}
        if holdout_fraction > 0 and (not held or len(held) == len(unique)):
            # Too few tracks to hold whole ones out: fall back to random rows.
            self._holdout = _holdout_rows(len(index), holdout_fraction, 0)
        else:
            self._holdout = np.isin(tracks, list(held))
        offsets = np.cumsum([0] + [int(s["rows"]) for s in self.shards])
        if offsets[-1] != len(index):
            raise ArtifactError(
                self.dir / "index.parquet",
                "row",
                f"{offsets[-1]} rows as in {LAYER_META}",
                len(index),
            )
        self._offsets = offsets

    def count(self, split: Split) -> int:
        held = int(self._holdout.sum())
        return held if split == "holdout" else len(self._holdout) - held

    def load_shard(self, i: int) -> Tensor:
        path = self.dir / str(self.shards[i]["file"])
        try:
            with safe_open(str(path), framework="pt") as fh:
                return fh.get_tensor(ACTS_KEY).float()
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(
                path, ACTS_KEY, f"a readable activation shard ({exc})", has_value=False
            ) from exc

    def _split_rows(self, i: int, data: Tensor, split: Split) -> Tensor:
        mask = self._holdout[self._offsets[i] : self._offsets[i + 1]]
        keep = mask if split == "holdout" else ~mask
        return data[torch.from_numpy(keep)]

    def batches(self, batch_size: int, seed: int, epoch: int, split: Split) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(self.shards), generator=gen).tolist()
        carry = torch.empty(0, self.d_in)
        for start in range(0, len(order), self.buffer_shards):
            parts = [carry] + [
                self._split_rows(i, self.load_shard(i), split)
                for i in order[start : start + self.buffer_shards]
            ]
            buffer = torch.cat(parts)
            buffer = buffer[torch.randperm(len(buffer), generator=gen)]
            usable = len(buffer) - len(buffer) % batch_size
            for b in range(0, usable, batch_size):
                yield buffer[b : b + batch_size]
            carry = buffer[usable:]
        if split == "holdout" and len(carry):
            yield carry

    def sample(self, n: int, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        rows: list[Tensor] = []
        have = 0
        for i in torch.randperm(len(self.shards), generator=gen).tolist():
            part = self._split_rows(i, self.load_shard(i), "train")
            rows.append(part[torch.randperm(len(part), generator=gen)[: n - have]])
            have += len(rows[-1])
            if have >= n:
                break
        return torch.cat(rows)


def stable_fraction(track_id: str) -> float:
    """A number in [0, 1) fixed by the track id (same split on every machine and run)."""
    return int.from_bytes(hashlib.sha256(track_id.encode()).digest()[:8], "big") / 2**64
