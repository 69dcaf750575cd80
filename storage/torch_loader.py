"""A torch `Dataset` over the Lance `samples` table: raw rows and blobs, no model code.

Each item is one (episode, frame t) sample as numpy arrays plus its decoded RGB frame, its depth
(meters, when stored), the episode's width/height/K/instruction and the captions covering t. The
conversion into model batches (keypoint choice, targets, augmentation) is `tasks/train/batches.py`'s job,
passed in as `transform`, because storage must not import models.

Spawn safety: only the root URI and small numpy index arrays are pickled to DataLoader workers;
every worker opens its own Lance handles on first use (`__getstate__` drops them), so workers
started with `multiprocessing_context="spawn"` never share a file handle or a Tokio runtime.

The train/eval split is per episode (sha256 of `episode_id` mapped to [0, 1)), so all frames of
one video land on the same side, and the split is the same on every machine and run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from storage.dataset import open_table
from storage.frame_codec import decode_depth_png16, decode_jpeg
from storage.query import leaf_values

Split = Literal["train", "eval", "all"]
SAMPLE_COLUMNS = ["episode_id", "frame", "keypoints_uv", "future", "future_valid", "history", "history_valid", "cluster_id"]
EPISODE_COLUMNS = ["episode_id", "width", "height", "K", "instruction", "task", "status"]


def split_of(episode_id: str, eval_fraction: float) -> Literal["train", "eval"]:
    """Deterministic episode-level split: sha256(episode_id) as a number in [0, 1) vs eval_fraction."""
    h = int.from_bytes(hashlib.sha256(episode_id.encode()).digest()[:8], "big") / 2.0**64
    return "eval" if h < eval_fraction else "train"


def sample_arrays(row: pa.Table) -> dict[str, Any]:
    """One `samples` row (a 1-row table) as numpy: future (N, L, 3), history (N, Lh, 3), ..."""
    L = row.schema.field("future").type.value_type.list_size
    Lh = row.schema.field("history").type.value_type.list_size
    return {
        "episode_id": row.column("episode_id")[0].as_py(),
        "frame": int(row.column("frame")[0].as_py()),
        "keypoints_uv": leaf_values(row.column("keypoints_uv"), 2).astype(np.float32),
        "future": leaf_values(row.column("future"), L, 3).astype(np.float32),
        "future_valid": leaf_values(row.column("future_valid"), L).astype(bool),
        "history": leaf_values(row.column("history"), Lh, 3).astype(np.float32),
        "history_valid": leaf_values(row.column("history_valid"), Lh).astype(bool),
        "cluster_id": leaf_values(row.column("cluster_id")).astype(np.int64),
    }


@dataclass
class TraceIndex:
    """Which rows exist: sample row offsets with their (episode, frame), and frame row offsets."""

    episode_ids: np.ndarray  # (R,) object, per samples row
    frames: np.ndarray  # (R,) int32
    rows: np.ndarray  # (R,) int64 row offsets into `samples`
    frame_rows: dict[tuple[str, int], int] = field(default_factory=dict)
    episodes: dict[str, dict] = field(default_factory=dict)  # episode_id -> width/height/K/instruction
    captions: dict[str, list[dict]] = field(default_factory=dict)  # episode_id -> caption rows

    @classmethod
    def build(cls, root: str) -> "TraceIndex":
        samples = open_table(root, "samples")
        if samples is None:
            raise FileNotFoundError(f"{root} has no 'samples' table (nothing ingested, or every episode failed)")
        t = samples.to_table(columns=["episode_id", "frame"])
        frames_t = open_table(root, "frames")
        frame_rows: dict[tuple[str, int], int] = {}
        if frames_t is not None:
            ft = frames_t.to_table(columns=["episode_id", "frame"])
            frame_rows = {(e, int(f)): i for i, (e, f) in enumerate(zip(ft["episode_id"].to_pylist(), ft["frame"].to_pylist()))}
        eps_t = open_table(root, "episodes")
        episodes = {}
        if eps_t is not None:
            for r in eps_t.to_table(columns=EPISODE_COLUMNS).to_pylist():
                episodes[r["episode_id"]] = r
        captions: dict[str, list[dict]] = {}
        cap_t = open_table(root, "captions")
        if cap_t is not None and cap_t.count_rows():
            cols = ["episode_id", "start_frame", "end_frame", "instruction_1", "instruction_2", "instruction_3", "embedding"]
            for r in cap_t.to_table(columns=cols).to_pylist():
                captions.setdefault(r["episode_id"], []).append(r)
        return cls(
            episode_ids=np.asarray(t["episode_id"].to_pylist(), dtype=object),
            frames=np.asarray(t["frame"].to_numpy(), np.int32),
            rows=np.arange(t.num_rows, dtype=np.int64),
            frame_rows=frame_rows,
            episodes=episodes,
            captions=captions,
        )

    def usable(self, root: str, min_valid: int, horizon: int) -> "TraceIndex":
        """Rows with at least one keypoint holding >= min_valid valid steps among 1..horizon
        (docs/method.md#loader-conventions)."""
        samples = open_table(root, "samples")
        ok = np.zeros(samples.count_rows(), bool)
        start = 0
        for batch in samples.to_batches(columns=["future_valid"], batch_size=1024):
            col = batch.column("future_valid")
            L = col.type.value_type.list_size
            v = col.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, L)[:, 1 : horizon + 1]
            counts = np.diff(col.offsets.to_numpy())
            enough = (v.sum(1) >= min_valid).astype(np.int64)
            per_row = np.add.reduceat(enough, np.r_[0, np.cumsum(counts)[:-1]]) if len(enough) else np.zeros(len(counts))
            ok[start : start + batch.num_rows] = (counts > 0) & (per_row > 0)
            start += batch.num_rows
        return self.select(ok[self.rows])

    def select(self, keep: np.ndarray) -> "TraceIndex":
        return TraceIndex(self.episode_ids[keep], self.frames[keep], self.rows[keep], self.frame_rows, self.episodes, self.captions)

    def split(self, split: Split, eval_fraction: float) -> "TraceIndex":
        if split == "all":
            return self
        sides = {e: split_of(e, eval_fraction) for e in set(self.episode_ids.tolist())}
        return self.select(np.array([sides[e] == split for e in self.episode_ids], dtype=bool))


def captions_at(captions: list[dict], frame: int) -> list[dict]:
    """Caption rows whose [start_frame, end_frame] (inclusive) covers `frame`."""
    return [c for c in captions if c["start_frame"] <= frame <= c["end_frame"]]


class TraceRows:
    """Reads one sample's arrays, frame and depth by position in an index; opens Lance lazily."""

    def __init__(self, root: str, index: TraceIndex, read_depth: bool = True) -> None:
        self.root = str(root)
        self.index = index
        self.read_depth = read_depth
        self._tables: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tables"] = {}  # never pickle Lance handles: each worker opens its own
        return state

    def _table(self, name: str):
        if name not in self._tables:
            self._tables[name] = open_table(self.root, name)
        return self._tables[name]

    def __len__(self) -> int:
        return len(self.index.rows)

    def read(self, i: int) -> dict[str, Any]:
        """Sample `i` with `image` (H, W, 3) uint8, `depth` (H, W) m or None, `episode`, `captions`."""
        row = self._table("samples").take([int(self.index.rows[i])], columns=SAMPLE_COLUMNS)
        out = sample_arrays(row)
        eid, t = out["episode_id"], out["frame"]
        ep = self.index.episodes.get(eid, {})
        out["episode"] = {
            "width": ep.get("width"),
            "height": ep.get("height"),
            "K": None if ep.get("K") is None else np.asarray(ep["K"], np.float32).reshape(3, 3),
            "instruction": ep.get("instruction") or "",
            "task": ep.get("task") or "",
        }
        out["captions"] = captions_at(self.index.captions.get(eid, []), t)
        out["image"], out["depth"] = self._frame(eid, t)
        if out["episode"]["width"] is None and out["image"] is not None:
            out["episode"]["height"], out["episode"]["width"] = out["image"].shape[:2]
        return out

    def _frame(self, eid: str, t: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        r = self.index.frame_rows.get((eid, t))
        if r is None:
            return None, None
        frames = self._table("frames")
        image = decode_jpeg(frames.take_blobs("jpeg", indices=[r])[0].read())
        depth = None
        if self.read_depth:
            blob = frames.take_blobs("depth_png16", indices=[r])[0]
            data = blob.read() if blob is not None else b""
            depth = decode_depth_png16(data) if data else None
        return image, depth


class LanceTraceDataset(Dataset):
    """`samples` rows of one split, each passed through `transform(raw, index_in_split, draw)`.

    `draw` counts the calls made in this process, so a seeded transform can vary its random
    choices (augmentation, keypoint subsets) from epoch to epoch yet stay reproducible.
    """

    def __init__(
        self,
        root: str,
        split: Split = "train",
        eval_fraction: float = 0.05,
        transform: Callable[[dict, int, int], Any] | None = None,
        read_depth: bool = True,
        index: TraceIndex | None = None,
        min_valid: int | None = None,
        horizon: int = 32,
    ) -> None:
        full = index if index is not None else TraceIndex.build(root)
        if min_valid is not None:  # drop slots without any keypoint that can be a target
            full = full.usable(root, min_valid, horizon)
        self.rows = TraceRows(root, full.split(split, eval_fraction), read_depth=read_depth)
        self.transform = transform
        self._draws = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def index(self) -> TraceIndex:
        return self.rows.index

    def __getitem__(self, i: int) -> Any:
        raw = self.rows.read(i)
        self._draws += 1
        return raw if self.transform is None else self.transform(raw, int(i), self._draws)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    collate_fn: Callable,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader whose workers (if any) are spawned, not forked (Lance and torch threads)."""
    gen = torch.Generator().manual_seed(seed)
    extra = {"multiprocessing_context": "spawn", "persistent_workers": True} if num_workers > 0 else {}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=gen,
        drop_last=drop_last,
        **extra,
    )


def dataset_versions(root: str) -> dict[str, int]:
    """Latest version per table that a training run reads (stats are keyed on this)."""
    out = {}
    for name in ("episodes", "samples", "frames", "captions"):
        ds = open_table(root, name)
        if ds is not None:
            out[name] = int(ds.version)
    return out


def versions_json(root: str) -> str:
    return json.dumps(dataset_versions(root), sort_keys=True)
