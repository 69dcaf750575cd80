"""Settings of a μ0 pretraining run (METHOD.md §2 "Hyper-parameters"); the `pretrain` flow's form."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PretrainConfig(BaseModel, frozen=True):
    """AdamW recipe defaults (lr 1e-4, betas 0.9/0.95, eps 1e-8, wd 1e-10, clip 10); shapes from the preset."""

    model_preset: str = Field("mu0-tiny", description="model preset: mu0-tiny (CPU, tests) or mu0-full (GPU)")
    steps: int = Field(1000, ge=1, description="optimiser steps in total (a resumed run continues up to this)")
    batch_size: int = Field(8, ge=1, description="samples per step")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (constant: the recipe has no scheduler)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    weight_decay: float = Field(1e-10, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(10.0, gt=0, description="global gradient-norm clip")
    eval_fraction: float = Field(0.05, ge=0, lt=1, description="fraction of episodes held out (by episode id hash)")
    max_keypoints: int | None = Field(None, ge=1, description="keypoints per sample at most (default: the preset's)")
    seed: int = Field(0, description="seed of initialisation, data order and augmentation")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (spawned)")
    checkpoint_every: int = Field(500, ge=1, description="save a checkpoint every this many steps (and at the end)")
    log_every: int = Field(10, ge=1, description="log losses every this many steps")
    out_dir: str = Field("runs/mu0", description="checkpoints go to <out_dir>/step-<step:06d>/")
    resume: bool = Field(True, description="continue from the latest checkpoint in out_dir when there is one")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU)")
    gradient_checkpointing: bool = Field(True, description="recompute activations in backward on CUDA")
