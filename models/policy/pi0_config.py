"""Settings of the π0-style baseline (comparison row "π0", docs/method.md#downstream-action-expert) and its preset.

The baseline is transformers' `PI0ForConditionalGeneration`: a PaliGemma VLM (SigLIP tower + Gemma) whose
per-layer K/V prefix a Gemma action expert reads, flow matching on action chunks. Unlike the μ0 policy it
sees no traces and nothing is frozen: VLM and expert train together from the demonstrations. `pi0-tiny`
is random-initialised (no π0 weights exist at this size) with an expert shaped as policy-tiny's decoder
(128 wide, 4 layers, 4 heads, 1 KV head, head_dim 32), so the comparison is about what feeds the expert.
Stored as config.json (with `kind: "pi0"`) beside every baseline checkpoint; the model is rebuilt from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from models.policy.chunking import ChunkedPolicyConfig


class Pi0BaselineConfig(ChunkedPolicyConfig):
    kind: Literal["pi0"] = Field("pi0", description="checkpoint kind: the rollout harness rebuilds a π0 baseline")
    image_size: int = Field(64, ge=16, description="resize-with-pad side of the camera image, pixels")
    patch_size: int = Field(8, ge=1, description="SigLIP patch side; (image_size / patch_size)^2 image tokens")
    vision_width: int = Field(64, ge=8, description="SigLIP hidden size")
    vision_depth: int = Field(2, ge=1, description="SigLIP layers")
    vision_heads: int = Field(2, ge=1, description="SigLIP heads")
    vision_mlp: int = Field(128, ge=8, description="SigLIP MLP size")
    vlm_width: int = Field(128, ge=8, description="Gemma (VLM) hidden size")
    vlm_mlp: int = Field(512, ge=8, description="Gemma (VLM) MLP size")
    depth: int = Field(4, ge=1, description="layers of the VLM and of the action expert (π0 pairs them layer by layer)")
    width: int = Field(128, ge=8, description="action expert hidden size")
    mlp_dim: int = Field(512, ge=8, description="action expert MLP size")
    heads: int = Field(4, ge=1, description="query heads (VLM and expert)")
    kv_heads: int = Field(1, ge=1, description="key/value heads (shared K/V layout of VLM and expert)")
    head_dim: int = Field(32, ge=4, description="size of one attention head")
    max_text_tokens: int = Field(48, ge=4, description="tokenizer max length of the prompt 'Task: {instruction}\\n'")
    action_dim: int = Field(4, ge=1, description="A: action size (a run takes its dataset's)")
    state_dim: int = Field(39, ge=1, description="proprioceptive state size (a run takes its dataset's)")
    noise_seed: int = Field(0, description="seed of the action noise at inference (fixed: same observation, same chunk)")

    @model_validator(mode="after")
    def _check(self) -> "Pi0BaselineConfig":
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")
        return self

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


PI0_PRESETS: dict[str, Pi0BaselineConfig] = {
    # CPU-sized: the mu0-tiny image size (64) and SigLIP tower shape, a 4-layer 128-wide Gemma, policy-tiny's expert.
    "pi0-tiny": Pi0BaselineConfig(preset="pi0-tiny"),
}
