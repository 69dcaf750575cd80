"""μ0 model config and named presets (docs/method.md#mu0-model, the released "golden" recipe).

The config is a frozen pydantic model so it doubles as a Prefect UI form and is stored as JSON beside
every checkpoint; the model is rebuilt from it, never unpickled.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.presets import pick_preset

TINY_BACKBONE = "tiny-random"  # a SmolVLM-class backbone built in code with random weights (no download)


class Mu0Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = Field("custom", description="name of the preset this config came from")
    # Backbone
    backbone: str = Field(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        description=f"SmolVLM/Idefics3 hub id or local dir saved with save_pretrained; {TINY_BACKBONE!r} builds a tiny random one",
    )
    backbone_layers: int = Field(20, ge=1, description="keep the first K text layers of the VLM (one expert layer each)")
    train_expert_only: bool = Field(True, description="freeze the whole VLM (vision tower, connector, text layers)")
    image_size: int = Field(512, ge=16, description="resize-with-pad side S of the RGB (and depth) image, pixels")
    max_text_tokens: int = Field(48, ge=4, description="tokenizer max length of the prompt 'Task: {caption}\\n'")
    # Depth input
    use_depth: bool = Field(True, description="encode depth_image through the vision tower with LoRA when present")
    lora_rank: int = Field(8, ge=1, description="LoRA rank on the vision tower's q/k/v/out/fc1/fc2 for depth")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA alpha (scale = alpha / rank)")
    # DINOv2 keypoint features
    dino: str | None = Field(
        "facebook/dinov2-base", description="DINOv2 hub id or local dir for per-keypoint features; None disables them"
    )
    dino_image_size: int = Field(518, ge=14, description="DINOv2 input side, pixels (multiple of its patch size)")
    point_encoder_channels: int = Field(
        0, ge=0, description="channels of a conv encoder trained from scratch, sampled at each keypoint (0: none)"
    )
    # Trace expert
    expert_width: float = Field(0.5, gt=0, le=4, description="expert hidden size as a fraction of the VLM hidden size")
    expert_ffn_multiple_of: int = Field(256, ge=1, description="FFN size rounding of SmolLM's get_intermediate_size")
    self_attn_every_n_layers: int = Field(2, ge=1, description="joint self-attention every n-th layer, cross-attention otherwise")
    timestep_freqs: int = Field(256, ge=8, description="sinusoidal flow-time embedding size")
    fourier_freqs: int = Field(8, ge=1, description="log-spaced (u,v) Fourier frequencies pi .. 2^(n-1) pi")
    # Trace representation
    history_len: int = Field(8, ge=1, description="history steps h per keypoint")
    history_group: int = Field(8, ge=1, description="history steps per history token g")
    n_ctrl: int = Field(10, description="B-spline control points D (4, 7 or 10)")
    ctrl_group: int = Field(10, ge=1, description="control points per future token g_cp")
    horizon: int = Field(32, ge=1, description="future steps H rendered from the control points (done head size)")
    max_keypoints: int = Field(256, ge=1, description="keypoints per sample N at most")
    # Objective
    done_weight: float = Field(0.5, ge=0, description="weight of the done-head BCE")
    done_bias_init: float = Field(3.0, description="done-head bias at init (sigmoid(3) = 0.95: 'still going')")
    rigid_weight: float = Field(5.0, ge=0, description="weight of the within-entity rigidity regulariser")
    num_sample_steps: int = Field(4, ge=1, description="Euler steps from t=1 to 0 at inference")
    seed: int = Field(0, description="seed of the random initialisation")

    @model_validator(mode="after")
    def _check(self) -> "Mu0Config":
        if self.n_ctrl not in (4, 7, 10):
            raise ValueError(f"n_ctrl must be 4, 7 or 10, got {self.n_ctrl}")
        if self.history_len % self.history_group:
            raise ValueError(f"history_len {self.history_len} must be a multiple of history_group {self.history_group}")
        if self.n_ctrl % self.ctrl_group:
            raise ValueError(f"n_ctrl {self.n_ctrl} must be a multiple of ctrl_group {self.ctrl_group}")
        return self

    @property
    def history_tokens(self) -> int:
        return self.history_len // self.history_group

    @property
    def future_tokens(self) -> int:
        return self.n_ctrl // self.ctrl_group

    @property
    def tokens_per_keypoint(self) -> int:
        return self.history_tokens + self.future_tokens


MODEL_PRESETS: dict[str, Mu0Config] = {
    # The published sizes: SmolVLM2-2.2B truncated to 20 layers, 1024-wide expert, frozen VLM, DINOv2-base.
    "mu0-full": Mu0Config(preset="mu0-full"),
    # A few million parameters, everything trainable, for CPU and tests. No pretrained vision weights
    # exist on a CPU box: a conv encoder learnt from scratch stands in for DINOv2 (BENCHMARKS.md, issue 14).
    "mu0-tiny": Mu0Config(
        preset="mu0-tiny",
        backbone=TINY_BACKBONE,
        backbone_layers=4,
        train_expert_only=False,
        image_size=64,
        dino=None,
        dino_image_size=56,
        point_encoder_channels=64,
        expert_width=0.5,
        expert_ffn_multiple_of=16,
        timestep_freqs=64,
        lora_rank=4,
        lora_alpha=8.0,
    ),
}


class UnknownModelPresetError(ValueError):
    """A model preset name that is not in MODEL_PRESETS."""


def get_model_preset(name: str, **overrides) -> Mu0Config:
    """The preset called `name` (optionally with fields overridden); unknown names list the known ones."""
    return pick_preset(MODEL_PRESETS, name, "model", UnknownModelPresetError, **overrides)
