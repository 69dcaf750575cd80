"""Demonstrations for training code: one `Demonstration` per episode, whatever the source filled it from.

Sim episode directories (`states.npy`, `actions.npy`) and LeRobot datasets (their state and action
features) both land in the `demonstrations` table (docs/architecture.md#table-demonstrations); this reads
it back as arrays, joined with the episode's instruction, so a policy loader needs no Lance or Arrow code.
Step i is source frame i of the episode's video; `frames[i]` is the stored frame showing it (the `frames`
table's `frame`), -1 where ingest subsampled it away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.dataset import open_table

_COLUMNS = ["episode_id", "frame_index", "frame", "timestamp", "state", "action", "fps", "source_episode_index"]


@dataclass(frozen=True)
class Demonstration:
    """One episode's demonstration: T steps at `fps`, in the source's units."""

    episode_id: str
    states: np.ndarray  # (T, S) float32; S = 0 when the source had no states
    actions: np.ndarray  # (T, A) float32; A = 0 when it had no actions
    timestamps: np.ndarray  # (T,) float32 seconds from the first step
    frames: np.ndarray  # (T,) int32 stored-frame index of each step, -1 where that frame was not stored
    fps: float  # steps per second; 0 when unknown
    instruction: str  # episodes.instruction (LeRobot: the task string)
    source_episode_index: int | None = None  # the LeRobot episode_index; None for an episode directory

    @property
    def n_steps(self) -> int:
        return int(len(self.states))


def _quoted(ids: list[str]) -> str:
    return ", ".join("'" + e.replace("'", "''") + "'" for e in ids)


def _matrix(lists: pa.ChunkedArray) -> np.ndarray:
    """list<float32> rows of one episode (all the same length) -> (T, D) float32."""
    arr = lists.combine_chunks()
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(arr), values.size // max(1, len(arr)))


def read_demonstrations(root: str, episode_ids: list[str] | None = None) -> dict[str, Demonstration]:
    """episode_id -> Demonstration for every episode with one (only `episode_ids` when given; ids without a
    demonstration are simply absent). Steps come back in order, however the rows were stored."""
    ds = open_table(root, "demonstrations")
    if ds is None or episode_ids == []:
        return {}
    where = None if episode_ids is None else f"episode_id IN ({_quoted(episode_ids)})"
    table = ds.to_table(columns=_COLUMNS, filter=where).sort_by([("episode_id", "ascending"), ("frame_index", "ascending")])
    eps = open_table(root, "episodes")
    instructions: dict[str, str] = {}
    if eps is not None:
        t = eps.to_table(columns=["episode_id", "instruction"], filter=where)
        instructions = dict(zip(t["episode_id"].to_pylist(), t["instruction"].to_pylist()))
    ids = table["episode_id"].to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    out = {}
    for a, b in zip(starts, [*starts[1:], len(ids)]):
        part = table.slice(a, b - a)
        eid = str(ids[a])
        source = part["source_episode_index"][0].as_py()
        out[eid] = Demonstration(
            episode_id=eid,
            states=_matrix(part["state"]),
            actions=_matrix(part["action"]),
            timestamps=part["timestamp"].to_numpy().astype(np.float32),
            frames=pc.fill_null(part["frame"], -1).to_numpy().astype(np.int32),
            fps=float(part["fps"][0].as_py()),
            instruction=instructions.get(eid) or "",
            source_episode_index=source,
        )
    return out
