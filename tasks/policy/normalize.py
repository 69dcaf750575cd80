"""Per-dimension normalisation of states and actions (mean / std), stored with every policy checkpoint.

The policy learns in normalised units; rollouts map back with the statistics of the data it was trained
on (`norm_stats.json` in the checkpoint), never with a dataset's current ones. Dimensions that never vary
(unused Meta-World object slots) keep std 1, so they are centred but not blown up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

STATS_FILE = "norm_stats.json"
MIN_STD = 1e-6


class NormStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    state_mean: list[float]
    state_std: list[float]
    action_mean: list[float]
    action_std: list[float]

    @classmethod
    def of(cls, states: np.ndarray, actions: np.ndarray) -> "NormStats":
        """From stacked steps: states (T, S), actions (T, A)."""
        def ms(x: np.ndarray) -> tuple[list[float], list[float]]:
            x = np.asarray(x, np.float64)
            std = x.std(0)
            return x.mean(0).tolist(), np.where(std > MIN_STD, std, 1.0).tolist()

        (sm, ss), (am, as_) = ms(states), ms(actions)
        return cls(state_mean=sm, state_std=ss, action_mean=am, action_std=as_)

    def norm_state(self, s: np.ndarray) -> np.ndarray:
        return ((s - np.float32(self.state_mean)) / np.float32(self.state_std)).astype(np.float32)

    def norm_action(self, a: np.ndarray) -> np.ndarray:
        return ((a - np.float32(self.action_mean)) / np.float32(self.action_std)).astype(np.float32)

    def unnorm_action(self, a: np.ndarray) -> np.ndarray:
        return (a * np.float32(self.action_std) + np.float32(self.action_mean)).astype(np.float32)

    def save(self, ckpt_dir: str | Path) -> Path:
        path = Path(ckpt_dir) / STATS_FILE
        path.write_text(self.model_dump_json(indent=1))
        return path

    @classmethod
    def load(cls, ckpt_dir: str | Path) -> "NormStats":
        path = Path(ckpt_dir) / STATS_FILE
        if not path.exists():
            raise FileNotFoundError(f"{ckpt_dir}: no {STATS_FILE} (not written by the finetune flow?)")
        return cls.model_validate_json(path.read_text())
