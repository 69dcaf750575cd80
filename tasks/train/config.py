"""Settings of a μ0 pretraining run (docs/method.md#model-hyper-parameters); the `pretrain` flow's form."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.mu0_config import MODEL_PRESETS, Mu0Config, get_model_preset


class PretrainConfig(BaseModel):
    """AdamW recipe defaults (lr 1e-4, betas 0.9/0.95, eps 1e-8, wd 1e-10, clip 10); shapes from `model`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Mu0Config = Field(
        MODEL_PRESETS["mu0-tiny"],
        description="the model to build (model.preset names the preset it came from: mu0-tiny for CPU and tests, "
        "mu0-full for GPU); a resumed run keeps its checkpoint's model",
    )
    steps: int = Field(1000, ge=1, description="optimiser steps in total (a resumed run continues up to this)")
    batch_size: int = Field(8, ge=1, description="samples per step")
    lr: float = Field(1e-4, gt=0, description="AdamW peak learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant (the published recipe) or linear warm-up then cosine decay to min_lr_ratio * lr"
    )
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps from 0 to lr (cosine schedule)")
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="the cosine schedule ends at this fraction of lr")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    weight_decay: float = Field(1e-10, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(10.0, gt=0, description="global gradient-norm clip")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="fraction of episodes held out (by episode id hash)")
    eval_dataset: str | None = Field(
        None, description="held-out trace dataset scored at every checkpoint (None: the eval_fraction split, if any)"
    )
    held_out_slots: int = Field(160, ge=1, description="held-out samples scored at each checkpoint (loss and ADE)")
    seed: int = Field(0, description="seed of data order and augmentation (initialisation: model.seed)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (spawned)")
    checkpoint_every: int = Field(500, ge=1, description="save a checkpoint every this many steps (and at the end)")
    log_every: int = Field(10, ge=1, description="log losses every this many steps")
    out_dir: str = Field("runs/mu0", description="checkpoints go to <out_dir>/step-<step:06d>/")
    resume: bool = Field(True, description="continue from the latest checkpoint in out_dir when there is one")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    gradient_checkpointing: bool = Field(True, description="recompute activations in backward on CUDA")

    @model_validator(mode="before")
    @classmethod
    def _model_by_name(cls, data: Any) -> Any:
        """`model` may be a preset name; the flat form of older callers and run.json files (`model_preset`,
        `max_keypoints`, one `seed` for initialisation too) still validates."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("model"), str):
            data["model"] = get_model_preset(data["model"])  # an unknown name: the error lists the known ones
        if "model_preset" in data or "max_keypoints" in data:
            preset, max_keypoints = data.pop("model_preset", None) or "mu0-tiny", data.pop("max_keypoints", None)
            flat = {"seed": data.get("seed", 0)} | ({} if max_keypoints is None else {"max_keypoints": max_keypoints})
            data.setdefault("model", get_model_preset(preset, **flat))
        return data
