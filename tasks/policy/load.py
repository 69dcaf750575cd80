"""Finding a μ0 checkpoint, and building a policy of either kind: fresh from its config or from a checkpoint.

A μ0 policy checkpoint names the μ0 checkpoint it was trained on (run.json `mu0_checkpoint`, absolute,
and `mu0_checkpoint_from_run`, relative to the run directory, so runs moved together still find it),
so loading one rebuilds μ0 from there and the policy's own weights on top. A π0 baseline checkpoint
(config `kind: "pi0"`) holds the whole model and needs no μ0.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from models.checkpoint import latest_checkpoint, load_checkpoint
from models.policy.checkpoint import AnyPolicy, load_policy_weights, read_policy_config
from models.policy.config import PolicyConfig
from models.policy.pi0_baseline import Pi0Baseline
from models.policy.pi0_config import Pi0BaselineConfig
from models.policy.policy import Mu0Policy
from tasks.policy.normalize import NormStats

RUN_FILE = "run.json"
MU0_FROM_RUN = "mu0_checkpoint_from_run"


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


def mu0_of_run(ckpt: str | Path, run: dict) -> str | None:
    """The μ0 checkpoint a policy checkpoint was trained on: where it was, else where it is relative to the run
    (a policy run and its μ0 moved or copied together); the recorded path when neither exists, so errors name it."""
    recorded, relative = run.get("mu0_checkpoint"), run.get(MU0_FROM_RUN)
    if recorded and not Path(recorded).exists() and relative:
        moved = (Path(ckpt).resolve().parent / relative).resolve()
        if moved.exists():
            return str(moved)
    return recorded


def new_policy(cfg: PolicyConfig | Pi0BaselineConfig, mu0_checkpoint: str | Path | None) -> AnyPolicy:
    """A freshly initialised policy of `cfg`'s kind; a μ0 policy sits on `mu0_checkpoint` (the baseline ignores it)."""
    if isinstance(cfg, Pi0BaselineConfig):
        return Pi0Baseline(cfg)
    if mu0_checkpoint is None:
        raise ValueError(f"policy preset {cfg.preset!r} needs a μ0 checkpoint")
    mu0, _ = load_checkpoint(mu0_checkpoint)
    return Mu0Policy(cfg, mu0)


def load_policy(ckpt: str | Path, device: str | torch.device = "cpu") -> tuple[AnyPolicy, NormStats, int]:
    """(policy on `device`, its normalisation stats, its step) from a finetune checkpoint directory."""
    cfg = read_policy_config(ckpt)
    run = read_policy_run(ckpt)
    policy = new_policy(cfg, mu0_of_run(ckpt, run))
    step = load_policy_weights(policy, ckpt)
    return policy.to(device), NormStats.load(ckpt), step


def check_policy_checkpoint(ckpt: str | Path) -> None:
    """Raise FileNotFoundError naming what is missing unless `ckpt` is a loadable policy checkpoint."""
    cfg = read_policy_config(ckpt)
    NormStats.load(ckpt)
    run = read_policy_run(ckpt)
    if cfg.kind == "mu0":
        resolve_mu0(mu0_of_run(ckpt, run))
