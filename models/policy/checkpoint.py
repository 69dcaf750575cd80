"""Policy checkpoints: a directory of safetensors + JSON, never pickle, staged then renamed.

    config.json              PolicyConfig or Pi0BaselineConfig, told apart by `kind` (the policy is rebuilt from it)
    policy.safetensors       μ0 policy: mixer, projections and decoder (μ0 is referenced by the run, not copied);
                             π0 baseline: the whole model. With an EMA, its averaged weights (what rollouts use)
    training_weights.safetensors  with an EMA only: the optimiser's own weights, for resume
    optimizer.safetensors    optimizer state (+ optimizer.json param groups), for resume
    trainer_state.json       {"step": ...}
    <extra files>            whatever the caller adds (normalisation stats, run settings)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.checkpoint import read_step
from models.loading import load_weights
from models.policy.config import PolicyConfig
from models.policy.ema import WeightEMA
from models.policy.pi0_baseline import Pi0Baseline
from models.policy.pi0_config import Pi0BaselineConfig
from models.policy.policy import Mu0Policy

AnyPolicy = Mu0Policy | Pi0Baseline
TRAINING_WEIGHTS = "training_weights.safetensors"


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_policy(policy: AnyPolicy, out_dir: str | Path, step: int, optimizer: torch.optim.Optimizer | None = None,
                extra: dict[str, str] | None = None, ema: WeightEMA | None = None) -> Path:
    """Write checkpoint `out_dir` (replaced if present) with `extra` {file name: text}; returns it."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".staging")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = policy.trainable_state_dict()
    save_file(_cpu(ema.averaged(weights) if ema else weights), tmp / "policy.safetensors")
    if ema is not None:
        save_file(_cpu(weights), tmp / TRAINING_WEIGHTS)
    (tmp / "config.json").write_text(policy.cfg.model_dump_json(indent=2))
    (tmp / "trainer_state.json").write_text(json.dumps({"step": int(step)}))
    if optimizer is not None:
        sd = optimizer.state_dict()
        tensors = {f"{pid}.{name}": (val if isinstance(val, torch.Tensor) else torch.tensor(val))
                   for pid, st in sd["state"].items() for name, val in st.items()}
        save_file(_cpu(tensors), tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps({"param_groups": sd["param_groups"]}))
    for name, text in (extra or {}).items():
        (tmp / name).write_text(text)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def read_policy_config(ckpt_dir: str | Path) -> PolicyConfig | Pi0BaselineConfig:
    """The config of either kind (`kind` "pi0": the baseline; "mu0" or absent: a μ0 policy)."""
    path = Path(ckpt_dir) / "config.json"
    if not (Path(ckpt_dir) / "policy.safetensors").exists() or not path.exists():
        raise FileNotFoundError(f"{ckpt_dir}: not a policy checkpoint (needs policy.safetensors and config.json)")
    data = json.loads(path.read_text())
    return (Pi0BaselineConfig if data.get("kind") == "pi0" else PolicyConfig).model_validate(data)


def load_policy_weights(policy: AnyPolicy, ckpt_dir: str | Path, file: str = "policy.safetensors") -> int:
    """Load `file` (the served weights; TRAINING_WEIGHTS to resume) into `policy`, strict but for μ0; returns the step."""
    missing, unexpected = policy.load_state_dict(load_weights(Path(ckpt_dir) / file), strict=False)
    missing = [k for k in missing if not k.startswith("mu0.")]
    if missing or unexpected:
        raise ValueError(f"{ckpt_dir}: checkpoint does not match its config (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return read_step(ckpt_dir)
