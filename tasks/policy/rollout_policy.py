"""A trained policy behind the harness's `Policy` contract (tasks/sim/policy.py): `kind="checkpoint"`.

The checkpoint's own `kind` picks the model (a μ0 policy, or the π0-style baseline); both take the same batch.

Each `act` normalises the 39-d Meta-World observation with the checkpoint's statistics, resizes the
harness image (the corpus camera and resolution) as training did, samples one chunk (16 actions,
10 Euler steps; the config's fixed noise seed) and returns it de-normalised; the
harness executes the first `execute_horizon` (8) actions.
"""

from __future__ import annotations

import numpy as np
import torch

from models.backbone import padded_uv_scale, resize_with_pad
from models.device import resolve_device
from tasks.policy.load import load_policy
from tasks.sim.policy import Observation
from tasks.sim.rollout_config import PolicySpec


class CheckpointPolicy:
    needs_image = True

    def __init__(self, ckpt: str, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.policy, self.stats, self.step = load_policy(ckpt, self.device)
        self.policy.eval()
        self.execute_horizon = self.policy.cfg.execute
        self.chunk = self.policy.cfg.chunk
        self._task = ""

    def reset(self, task: str, instruction: str) -> None:
        self._task = task

    @torch.no_grad()
    def act(self, observation: Observation) -> np.ndarray:
        if observation.image is None:
            raise ValueError("the checkpoint policy needs the camera image (needs_image=True)")
        cfg, size = self.policy.cfg, self.policy.image_size
        state = np.asarray(observation.state, np.float32).reshape(-1)
        if state.shape[0] != cfg.state_dim:
            raise ValueError(f"the checkpoint expects {cfg.state_dim}-d states, the harness gave {state.shape[0]}")
        h, w = observation.image.shape[:2]
        batch = {
            "image": resize_with_pad(observation.image, size)[None].to(self.device),
            "uv_image_scale": torch.tensor([padded_uv_scale(h, w, size)], dtype=torch.float32, device=self.device),
            "text": [observation.instruction],
            "state": torch.from_numpy(self.stats.norm_state(state))[None].to(self.device),
        }
        gen = torch.Generator(device=self.device).manual_seed(self.policy.sample_seed)
        chunk = self.policy.sample(batch, gen)[0].float().cpu().numpy()
        return self.stats.unnorm_action(chunk)


def build(spec: PolicySpec) -> CheckpointPolicy:
    """POLICY_BUILDERS["checkpoint"]: the policy of `spec.checkpoint` (a finetune step directory)."""
    return CheckpointPolicy(str(spec.checkpoint))
