"""Settings of an action-expert finetuning run (docs/method.md#downstream-action-expert); the `finetune` flow's form."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.policy.config import get_policy_preset
from tasks.config import error_text

MANAGED = {"action_dim": "the dataset's", "state_dim": "the dataset's", "seed": "--seed", "use_traces": "--no-traces",
           "preset": "--preset", "kind": "--preset"}
"""Policy fields a run sets itself, and where they come from: `policy` may not override them."""


class FinetuneConfig(BaseModel):
    """The published recipe: AdamW lr 1e-4, wd 0.01, warm-up then cosine, grad-clip 1.0; μ0 frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mu0_checkpoint: str = Field(
        "runs/mu0", description="μ0 checkpoint (a step-<step:06d> directory, or a run directory: its latest step); "
        "unused by the π0 baseline"
    )
    preset: str = Field("policy-tiny", description="policy preset: policy-tiny (CPU, on mu0-tiny), policy-full (GPU), "
                        "or pi0-tiny (the π0-style baseline: no μ0, everything trained)")
    use_traces: bool = Field(True, description="False: the 'VLM + action expert' ablation (no trace tokens, no mixer); "
                            "μ0 presets only")
    policy: dict[str, int | float | bool | str] = Field(
        default_factory=dict, description="fields of the policy preset to override, e.g. {\"grid\": 16} "
        "(models/policy/config.py; `mu0 finetune --set grid=16`); a resumed run keeps its checkpoint's"
    )
    steps: int = Field(300, ge=1, description="optimiser steps in total (a resumed run continues up to this)")
    batch_size: int = Field(8, ge=1, description="samples (one step of one demonstration each) per optimiser step")
    lr: float = Field(1e-4, gt=0, description="AdamW peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    warmup_steps: int = Field(1000, ge=0, description="linear warm-up steps (capped at 10% of `steps`), then cosine")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the cosine ends at this fraction of lr")
    grad_clip: float = Field(1.0, gt=0, description="global gradient-norm clip")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="checkpoints serve an exponential moving average "
                                    "of the weights with this decay (openpi: 0.99); None: the last step's weights")
    frame_cache_gb: float = Field(2.0, gt=0, description="decoded training frames kept in memory at most (GiB, LRU)")
    tasks: list[str] | None = Field(None, description="keep episodes of these tasks only (episodes.task); None: all")
    demos_per_task: int | None = Field(None, ge=1, description="at most this many demonstrations per task (by episode id)")
    seed: int = Field(0, description="seed of data order, flow noise and the policy's initialisation")
    checkpoint_every: int = Field(100, ge=1, description="save a checkpoint every this many steps (and at the end)")
    log_every: int = Field(10, ge=1, description="log the loss every this many steps")
    out_dir: str = Field("runs/policy", description="checkpoints go to <out_dir>/step-<step:06d>/")
    resume: bool = Field(True, description="continue from the latest checkpoint in out_dir when there is one")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")

    @field_validator("tasks", mode="before")
    @classmethod
    def _split(cls, value):
        """A comma-separated string is a list of tasks."""
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()] or None
        return value

    @model_validator(mode="after")
    def _check_policy(self) -> "FinetuneConfig":
        """Overrides must name fields of the preset's config, with values it accepts; the run's own are refused."""
        if not self.policy:
            return self
        for key in self.policy:
            if key in MANAGED:
                raise ValueError(f"policy setting {key!r} is not set here: it is {MANAGED[key]}")
        try:
            get_policy_preset(self.preset, **self.policy)
        except ValidationError as exc:
            errors = []
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"])
                if e["type"] == "extra_forbidden":
                    known = sorted(set(type(get_policy_preset(self.preset)).model_fields) - set(MANAGED))
                    errors.append(f"unknown policy setting {where!r} for preset {self.preset!r}; its settings: {', '.join(known)}")
                else:
                    errors.append(f"policy setting {where}: {error_text(e)}" if where else error_text(e))
            raise ValueError("; ".join(errors)) from None
        return self
