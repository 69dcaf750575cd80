"""Finding a μ0 checkpoint and rebuilding a trained policy from its checkpoint directory.

A policy checkpoint names the μ0 checkpoint it was trained on (run.json `mu0_checkpoint`, absolute),
so loading one rebuilds μ0 from there and the policy's own weights on top.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.checkpoint import latest_checkpoint, load_checkpoint
from models.policy.checkpoint import load_policy_weights, read_policy_config
from models.policy.policy import Mu0Policy
from tasks.policy.normalize import NormStats

RUN_FILE = "run.json"


def resolve_mu0(path: str | Path) -> Path:
    """A step directory as is; a run directory -> its latest step; anything else is refused with the reason."""
    p = Path(path)
    if (p / "trainer_state.json").exists() and (p / "config.json").exists():
        return p.resolve()
    latest = latest_checkpoint(p)
    if latest is None:
        raise FileNotFoundError(f"{path}: not a μ0 checkpoint or a run directory holding one (train one with `mu0 pretrain`)")
    return latest.resolve()


def read_policy_run(ckpt: str | Path) -> dict:
    path = Path(ckpt) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{ckpt}: not a policy checkpoint (no {RUN_FILE}; write one with `mu0 finetune`)")
    return json.loads(path.read_text())


def load_policy(ckpt: str | Path, device: str | torch.device = "cpu") -> tuple[Mu0Policy, NormStats, int]:
    """(policy on `device`, its normalisation stats, its step) from a finetune checkpoint directory."""
    cfg = read_policy_config(ckpt)
    run = read_policy_run(ckpt)
    mu0, _ = load_checkpoint(run["mu0_checkpoint"])
    policy = Mu0Policy(cfg, mu0)
    step = load_policy_weights(policy, ckpt)
    return policy.to(device), NormStats.load(ckpt), step


def check_policy_checkpoint(ckpt: str | Path) -> None:
    """Raise FileNotFoundError naming what is missing unless `ckpt` is a loadable policy checkpoint."""
    read_policy_config(ckpt)
    NormStats.load(ckpt)
    resolve_mu0(read_policy_run(ckpt)["mu0_checkpoint"])
