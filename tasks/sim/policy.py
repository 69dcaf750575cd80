"""The contract between a robot policy and the closed-loop harness (tasks/sim/rollout.py).

A policy predicts action chunks, as action experts do: `act` returns (k, 4) actions and the harness
executes the first min(k, execute_horizon) before asking again. `needs_image` lets state-only
policies (the scripted expert) skip rendering, which costs ~40x a physics step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

ACTION_DIM = 4  # Meta-World: end-effector delta xyz and gripper effort, each in [-1, 1]


@dataclass(frozen=True)
class Observation:
    """What a policy sees at env step `step` (0 right after reset).

    state (39,) float32: Meta-World's goal-observable observation (hand xyz, gripper opening,
    objects, the previous frame's 18 values, goal xyz). image (H, W, 3) uint8 from the sim corpus's
    FreeCamera at its resolution (320x240), or None when the policy does not need it.
    """

    state: np.ndarray
    image: np.ndarray | None
    instruction: str
    step: int


@runtime_checkable
class Policy(Protocol):
    execute_horizon: int  # actions of a chunk executed before `act` is called again
    needs_image: bool  # render observations for this policy (state-only policies skip it)

    def reset(self, task: str, instruction: str) -> None:
        """Start a new episode of `task` (Meta-World name without -v3)."""

    def act(self, observation: Observation) -> np.ndarray:
        """An action chunk (k, 4), k >= 1, first action first."""
