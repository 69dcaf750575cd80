"""One closed-loop episode: a `Policy` acts in a seeded Meta-World task instance until success or `max_steps`.

The env is the goal-observable class the sim corpus uses (tasks/sim/generate.py: object and goal
placement fixed by the seed), images come from the same FreeCamera at the same resolution, so a
policy trained on the corpus sees what it was trained on. Success is Meta-World's `info["success"]`
at any step; the episode stops there. Executed actions are clipped to the action space [-1, 1] and
returned, so an episode can be re-rendered later by replaying them (tasks.sim.policies.ReplayPolicy).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from tasks.sim.camera import FreeCamera
from tasks.sim.generate import _RENDER_OFF, _make_env, instruction_of
from tasks.sim.policy import ACTION_DIM, Observation, Policy


@dataclass
class RolloutResult:
    """steps: env steps taken; actions (steps, 4): what was executed; frames (steps + 1, H, W, 3) uint8 when recorded
    (frame 0 at reset, frame i after step i)."""

    task: str
    seed: int
    success: bool
    steps: int
    actions: np.ndarray
    frames: np.ndarray | None = None

    def row(self) -> dict:
        return {"task": self.task, "seed": self.seed, "success": self.success, "steps": self.steps}


class _Camera:
    """RGB only, with the corpus's render flags (no shadow, reflection, skybox)."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int, view: FreeCamera):
        self.renderer = mujoco.Renderer(model, height=height, width=width)
        self.cam = view.to_mjv()

    def rgb(self, data: mujoco.MjData) -> np.ndarray:
        self.renderer.update_scene(data, camera=self.cam)
        for flag in _RENDER_OFF:
            self.renderer.scene.flags[flag] = False
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


def _chunk(actions, horizon: int) -> np.ndarray:
    """The part of a predicted chunk to execute, validated and clipped to the action space."""
    chunk = np.asarray(actions, dtype=np.float32)
    if chunk.ndim == 1:
        chunk = chunk[None]
    if chunk.ndim != 2 or chunk.shape[1] != ACTION_DIM or len(chunk) == 0:
        raise ValueError(f"a policy must return an action chunk of shape (k, {ACTION_DIM}), k >= 1; got {chunk.shape}")
    if not np.isfinite(chunk).all():
        raise ValueError("the policy returned non-finite actions")
    return np.clip(chunk[: max(1, int(horizon))], -1.0, 1.0)


def rollout_episode(
    policy: Policy,
    task: str,
    seed: int,
    max_steps: int | None = None,
    record_video: bool = False,
    width: int = 320,
    height: int = 240,
    view: FreeCamera | None = None,
) -> RolloutResult:
    """Run `policy` on the instance of `task` drawn from `seed`; max_steps None: the env's max_path_length (500)."""
    instruction = instruction_of(task)
    env = _make_env(task, seed)
    max_steps = env.max_path_length if max_steps is None else int(max_steps)
    env.max_path_length = max(env.max_path_length, max_steps)
    camera = _Camera(env.model, width, height, view or FreeCamera()) if (policy.needs_image or record_video) else None
    frames, actions, success, truncated, step = [], [], False, False, 0
    try:
        state, _ = env.reset()
        policy.reset(task, instruction)
        image = camera.rgb(env.data) if camera else None
        if record_video:
            frames.append(image)
        while step < max_steps and not success:
            obs = Observation(state.astype(np.float32), image if policy.needs_image else None, instruction, step)
            for action in _chunk(policy.act(obs), policy.execute_horizon):
                state, _, _, truncated, info = env.step(action)
                step += 1
                actions.append(action)
                image = camera.rgb(env.data) if camera else None
                if record_video:
                    frames.append(image)
                success = bool(info.get("success", 0))
                if success or truncated or step >= max_steps:
                    break
            if truncated:
                break
    finally:
        if camera:
            camera.close()
        env.close()
    return RolloutResult(
        task=task, seed=seed, success=success, steps=step,
        actions=np.asarray(actions, np.float32).reshape(-1, ACTION_DIM),
        frames=np.stack(frames) if record_video else None,
    )
