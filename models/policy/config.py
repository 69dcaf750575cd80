"""Settings of the downstream action expert (docs/method.md#downstream-action-expert) and its presets.

Frozen pydantic, stored as config.json beside every policy checkpoint: the policy is rebuilt from it.
`policy-full` has the published shapes (a gemma_300m-shaped decoder on a 20x20 grid); `policy-tiny`
sits on a mu0-tiny checkpoint and trains on two CPU cores in minutes. The action and state sizes of a
run are the dataset's (the finetune loop sets them), so the presets' values only fix the default shapes.
`get_policy_preset` also knows the π0-style baseline's presets (models/policy/pi0_config.py): one namespace
of presets for `mu0 finetune --preset`, told apart by each config's `kind`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from models.policy.chunking import ChunkedPolicyConfig

from models.policy.pi0_config import PI0_PRESETS, Pi0BaselineConfig
from models.presets import pick_preset


class PolicyConfig(ChunkedPolicyConfig):
    kind: Literal["mu0"] = Field("mu0", description="checkpoint kind: a μ0 policy (frozen μ0 + action expert)")
    use_traces: bool = Field(True, description="mix μ0's trace tokens into the VLM tokens; False: the 'VLM + action expert' ablation")
    grid: int = Field(20, ge=2, description="G: μ0 is queried on a uniform G x G keypoint grid (even: 2x2 pooled)")
    mixer_heads: int = Field(16, ge=1, description="heads of the GatedMotionMixer cross-attention (divide the VLM width)")
    width: int = Field(1024, ge=8, description="action decoder hidden size")
    depth: int = Field(18, ge=1, description="action decoder layers")
    mlp_dim: int = Field(4096, ge=8, description="GeGLU hidden size of each decoder layer")
    heads: int = Field(8, ge=1, description="query heads")
    kv_heads: int = Field(1, ge=1, description="key/value heads (grouped-query attention)")
    head_dim: int = Field(256, ge=4, description="size of one attention head")
    time_freqs: int = Field(256, ge=8, description="sinusoidal flow-time embedding size")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base of the decoder")
    action_dim: int = Field(12, ge=1, description="A: action size (a run takes its dataset's)")
    state_dim: int = Field(16, ge=0, description="proprioceptive state size (a run takes its dataset's; 0: no state token)")
    wrist_dim: int = Field(0, ge=0, description="feature size of wrist-camera tokens given as batch['wrist'] (0: no wrist camera)")
    wrist_tokens: int = Field(64, ge=1, description="wrist tokens (8x8 pooled patches), each with a learned position embedding")
    guidance_seed: int = Field(0, description="seed of μ0's t=1 noise at inference (fixed: same observation, same guidance)")

    @model_validator(mode="after")
    def _check(self) -> "PolicyConfig":
        if self.grid % 2:
            raise ValueError(f"grid must be even (2x2 average pooling), got {self.grid}")
        return self

    @property
    def n_keypoints(self) -> int:
        return self.grid * self.grid

    @property
    def n_trace_tokens(self) -> int:
        return (self.grid // 2) ** 2


POLICY_PRESETS: dict[str, PolicyConfig] = {
    # The published policy: gemma_300m-shaped decoder (1024 wide, 18 layers, MLP 4096, 8 heads, 1 KV head, head_dim 256),
    # 20x20 grid pooled to 100 trace tokens, 16-head mixer, action 12, state 16, chunk 16, execute 8, 10 Euler steps.
    "policy-full": PolicyConfig(preset="policy-full"),
    # CPU-sized, on a mu0-tiny checkpoint (VLM width 128 -> 4 mixer heads); Meta-World's 4-d actions and 39-d states.
    "policy-tiny": PolicyConfig(
        preset="policy-tiny", grid=8, mixer_heads=4, width=128, depth=4, mlp_dim=512, heads=4, kv_heads=1, head_dim=32,
        time_freqs=64, action_dim=4, state_dim=39,
    ),
}


class UnknownPolicyPresetError(ValueError):
    """A policy preset name that is in neither POLICY_PRESETS nor PI0_PRESETS."""


def get_policy_preset(name: str, **overrides) -> PolicyConfig | Pi0BaselineConfig:
    """The preset called `name` (fields optionally overridden); unknown names list the known ones."""
    return pick_preset({**POLICY_PRESETS, **PI0_PRESETS}, name, "policy", UnknownPolicyPresetError, **overrides)
