"""Demonstration steps as policy training samples: (image at step t, state t, action chunk t..t+C-1).

Reads `storage.demonstrations.read_demonstrations` and the stored frame of each step from the `frames`
table (steps whose frame ingest did not store are skipped). A chunk running past the episode's end is
padded with the last action and masked out of the loss, so the policy learns to stop, not to guess.
Decoded frames are kept resized (uint8), as every epoch revisits them, in a least-recently-used cache
bounded in bytes: at policy-full's 512 px one frame is 0.79 MB, so a RoboCasa-sized run would not fit.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from models.backbone import padded_uv_scale, resize_with_pad
from storage.dataset import open_table
from storage.demonstrations import Demonstration, read_demonstrations
from storage.frame_codec import decode_jpeg
from tasks.policy.normalize import NormStats


def select_demonstrations(root: str, tasks: list[str] | None = None, per_task: int | None = None) -> dict[str, Demonstration]:
    """Demonstrations of ok episodes with states and actions, optionally of `tasks` only, at most `per_task` each."""
    eps = open_table(root, "episodes")
    if eps is None:
        raise FileNotFoundError(f"{root} has no episodes table (nothing ingested)")
    rows = eps.to_table(columns=["episode_id", "task", "status"]).to_pylist()
    by_task: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r["episode_id"]):
        if r["status"] == "ok" and (tasks is None or r["task"] in tasks):
            by_task.setdefault(r["task"] or "", []).append(r["episode_id"])
    if tasks:
        unknown = sorted(set(tasks) - set(by_task))
        if unknown:
            raise ValueError(f"{root}: no ok episodes of task(s) {unknown}; tasks present: {sorted({r['task'] for r in rows})}")
    ids = [e for group in by_task.values() for e in group[:per_task]]
    demos = {k: d for k, d in read_demonstrations(root, ids).items() if d.states.shape[1] and d.actions.shape[1]}
    if not demos:
        raise ValueError(f"{root}: no demonstrations with states and actions among the selected episodes")
    return demos


def stats_of(demos: dict[str, Demonstration]) -> NormStats:
    return NormStats.of(np.concatenate([d.states for d in demos.values()]), np.concatenate([d.actions for d in demos.values()]))


def action_chunk(actions: np.ndarray, t: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk (C, A), mask (C,)): actions t..t+C-1, padded with the last action (mask False)."""
    part = actions[t : t + chunk]
    mask = np.zeros(chunk, bool)
    mask[: len(part)] = True
    pad = np.repeat(actions[-1:], chunk - len(part), axis=0)
    return np.concatenate([part, pad]).astype(np.float32), mask


class DemoSteps(Dataset):
    """Every step with a stored frame, across the given demonstrations, as one normalised sample."""

    def __init__(self, root: str, demos: dict[str, Demonstration], stats: NormStats, chunk: int, image_size: int,
                 cache_bytes: int = 2 << 30) -> None:
        self.root, self.demos, self.stats = str(root), demos, stats
        self.chunk, self.image_size = chunk, image_size
        frames = open_table(root, "frames")
        if frames is None:
            raise FileNotFoundError(f"{root} has no frames table")
        ft = frames.to_table(columns=["episode_id", "frame"])
        self._frame_rows = {(e, int(f)): i for i, (e, f) in enumerate(zip(ft["episode_id"].to_pylist(), ft["frame"].to_pylist()))}
        self.items = [(eid, t) for eid, d in sorted(demos.items()) for t in range(d.n_steps)
                      if d.frames[t] >= 0 and (eid, int(d.frames[t])) in self._frame_rows]
        if not self.items:
            raise ValueError(f"{root}: no demonstration step has a stored frame")
        self._frames = None
        self._cache: OrderedDict[tuple[str, int], tuple[torch.Tensor, tuple[float, float]]] = OrderedDict()
        self.cache_frames = max(1, cache_bytes // (3 * image_size * image_size))

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, eid: str, frame: int) -> tuple[torch.Tensor, tuple[float, float]]:
        key = (eid, frame)
        if key not in self._cache:
            if self._frames is None:
                self._frames = open_table(self.root, "frames")
            rgb = decode_jpeg(self._frames.take_blobs("jpeg", indices=[self._frame_rows[key]])[0].read())
            img = ((resize_with_pad(rgb, self.image_size) + 1) * 127.5).round().to(torch.uint8)
            self._cache[key] = (img, padded_uv_scale(rgb.shape[0], rgb.shape[1], self.image_size))
            if len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        img, scale = self._cache[key]
        return img.float() / 127.5 - 1, scale

    def __getitem__(self, i: int) -> dict[str, Any]:
        eid, t = self.items[i]
        d = self.demos[eid]
        image, scale = self._image(eid, int(d.frames[t]))
        chunk, mask = action_chunk(d.actions, t, self.chunk)
        return {"image": image, "text": d.instruction, "uv_image_scale": torch.tensor(scale, dtype=torch.float32),
                "state": torch.from_numpy(self.stats.norm_state(d.states[t])),
                "actions": torch.from_numpy(self.stats.norm_action(chunk)), "action_mask": torch.from_numpy(mask)}


def collate(items: list[dict]) -> dict[str, Any]:
    return {k: ([it[k] for it in items] if k == "text" else torch.stack([it[k] for it in items])) for k in items[0]}
