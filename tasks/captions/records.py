"""Caption records of one episode and their `captions` table rows (storage.schema.CAPTIONS)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from storage import schema as S

LEVELS = ("motion", "subtask", "task")
# The stage 7 vocabulary (docs/method.md#stage-7-segmentation-and-captions) plus the verbs our task
# names use (press, open, close).
SKILLS = (
    "reach", "grasp", "lift", "transport", "place", "release", "push", "pull", "rotate",
    "open", "close", "press", "reposition", "unknown",
)


@dataclass(frozen=True)
class Caption:
    """One caption over stored frames [start_frame, end_frame] (inclusive)."""

    caption_id: int
    level: str  # "motion" | "subtask" | "task"
    start_frame: int
    end_frame: int
    instruction_1: str  # descriptive, third person
    instruction_2: str  # imperative
    instruction_3: str  # casual request
    skill_labels: tuple[str, ...]
    embodiment: str
    children: tuple[int, ...] = ()  # caption_ids merged into this one

    def covers(self, frame: int) -> bool:
        return self.start_frame <= frame <= self.end_frame


@dataclass(frozen=True)
class Captions:
    """All captions of an episode, with the MiniLM embedding (n, 384) of each `instruction_1`."""

    items: tuple[Caption, ...]
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, S.EMBEDDING_DIM), np.float32))

    def __post_init__(self) -> None:
        ids = [c.caption_id for c in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError(f"caption ids are not unique: {ids}")
        if self.embeddings.shape != (len(self.items), S.EMBEDDING_DIM):
            raise ValueError(f"embeddings {self.embeddings.shape} do not match {len(self.items)} captions")

    def level(self, name: str) -> list[Caption]:
        return [c for c in self.items if c.level == name]

    def ids_covering(self, frames: np.ndarray) -> list[list[int]]:
        """For each frame, the caption_ids whose [start, end] covers it (the samples' `caption_ids`)."""
        return [[c.caption_id for c in self.items if c.covers(int(f))] for f in frames]

    def to_table(self, episode_id: str) -> pa.Table:
        n = len(self.items)
        col = lambda name: [getattr(c, name) for c in self.items]  # noqa: E731
        flat = pa.array(np.ascontiguousarray(self.embeddings, np.float32).reshape(-1), pa.float32())
        return pa.table(
            {
                "episode_id": pa.array([episode_id] * n, pa.string()),
                "caption_id": pa.array(col("caption_id"), pa.int32()),
                "level": pa.array(col("level"), pa.string()),
                "start_frame": pa.array(col("start_frame"), pa.int32()),
                "end_frame": pa.array(col("end_frame"), pa.int32()),
                "instruction_1": pa.array(col("instruction_1"), pa.string()),
                "instruction_2": pa.array(col("instruction_2"), pa.string()),
                "instruction_3": pa.array(col("instruction_3"), pa.string()),
                "skill_labels": pa.array([list(c.skill_labels) for c in self.items], pa.list_(pa.string())),
                "embodiment": pa.array(col("embodiment"), pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, S.EMBEDDING_DIM),
            },
            schema=S.CAPTIONS,
        )
