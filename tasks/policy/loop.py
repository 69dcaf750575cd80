"""The action-expert finetuning loop and its checkpoints (no Prefect here; `flows/finetune.py` wraps it).

`<out>/step-<step:06d>/` holds models/policy/checkpoint.py's files plus `norm_stats.json` (the
normalisation the weights were trained with) and `run.json` (dataset, absolute μ0 checkpoint, the
FinetuneConfig, the episodes used). Resuming loads the latest directory, its stats and its optimizer
state and continues the step count. With `ema_decay` the checkpoint serves the weights' moving average
and keeps the optimiser's own weights beside it for resume. A μ0 policy trains its mixer, projections and decoder (μ0 frozen);
the π0 baseline (a `pi0-*` preset, no μ0: run.json `mu0_checkpoint` is null) trains all of itself.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from models.checkpoint import latest_checkpoint, load_optimizer_state
from models.device import resolve_device
from models.policy.checkpoint import TRAINING_WEIGHTS, AnyPolicy, load_policy_weights, save_policy
from models.policy.config import get_policy_preset
from models.policy.ema import WeightEMA
from tasks.policy.config import FinetuneConfig
from tasks.policy.demos import DemoSteps, collate, select_demonstrations, stats_of
from tasks.policy.load import MU0_FROM_RUN, RUN_FILE, load_policy, mu0_of_run, new_policy, read_policy_run, resolve_mu0
from tasks.policy.normalize import STATS_FILE, NormStats


@dataclass
class FinetuneResult:
    start_step: int
    final_step: int
    checkpoint: str
    seconds: float
    steps_per_s: float
    samples: int
    log: list[dict] = field(default_factory=list)


def step_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / f"step-{step:06d}"


def lr_at(step: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up (capped at 10% of the run) then cosine to min_lr_ratio * lr; a function of the step alone."""
    warm = min(cfg.warmup_steps, cfg.steps // 10)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = min((step - warm) / max(cfg.steps - warm, 1), 1.0)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def uses_mu0(preset: str) -> bool:
    """False for the π0 baseline's presets, which train without a μ0 checkpoint."""
    return get_policy_preset(preset).kind == "mu0"


def _build(dataset: str, cfg: FinetuneConfig, device) -> tuple[AnyPolicy, NormStats, dict, int, Path | None]:
    """A fresh policy (on the μ0 checkpoint for a μ0 preset), or the latest checkpoint of out_dir when resuming."""
    demos = select_demonstrations(dataset, cfg.tasks, cfg.demos_per_task)
    latest = latest_checkpoint(cfg.out_dir) if cfg.resume else None
    if latest is not None:
        policy, stats, start = load_policy(latest, device)
        return policy, stats, demos, start, latest
    first = next(iter(demos.values()))
    mu0 = uses_mu0(cfg.preset)
    pcfg = get_policy_preset(cfg.preset, action_dim=first.actions.shape[1], state_dim=first.states.shape[1], seed=cfg.seed,
                             **({"use_traces": cfg.use_traces} if mu0 else {}), **cfg.policy)
    policy = new_policy(pcfg, resolve_mu0(cfg.mu0_checkpoint) if mu0 else None)
    return policy.to(device), stats_of(demos), demos, 0, None


def _weight_ema(policy: AnyPolicy, cfg: FinetuneConfig, ckpt: Path | None) -> WeightEMA | None:
    """The EMA of a run with `ema_decay`; on resume the checkpoint's served weights are the average so far
    and its training weights (when it kept them) go back into the policy."""
    if cfg.ema_decay is None:
        return None
    ema = WeightEMA(policy, cfg.ema_decay)
    if ckpt is not None and (ckpt / TRAINING_WEIGHTS).exists():
        load_policy_weights(policy, ckpt, TRAINING_WEIGHTS)
    return ema


def _batches(loader: DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def _to(batch: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def train_policy(dataset: str, cfg: FinetuneConfig, on_log: Callable[[dict], None] | None = None) -> FinetuneResult:
    """Run (or resume) finetuning up to `cfg.steps`; returns where it ended and the logged losses."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    policy, stats, demos, start, ckpt = _build(dataset, cfg, device)
    ema = _weight_ema(policy, cfg, ckpt)
    policy.train()
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if ckpt is not None:
        load_optimizer_state(opt, ckpt)
    data = DemoSteps(dataset, demos, stats, policy.cfg.chunk, policy.image_size, int(cfg.frame_cache_gb * 2**30))
    loader = DataLoader(data, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.seed + start), drop_last=len(data) >= cfg.batch_size)
    if ckpt is not None:
        mu0 = mu0_of_run(ckpt, read_policy_run(ckpt))
    else:
        mu0 = str(resolve_mu0(cfg.mu0_checkpoint)) if policy.cfg.kind == "mu0" else None
    run = {"dataset": dataset, "mu0_checkpoint": mu0,
           MU0_FROM_RUN: os.path.relpath(mu0, Path(cfg.out_dir).resolve()) if mu0 else None,
           "config": cfg.model_dump(mode="json"), "episodes": sorted(demos)}
    extra = {STATS_FILE: stats.model_dump_json(indent=1), RUN_FILE: json.dumps(run, indent=2)}
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + start)
    log: list[dict] = []
    step, t0, last_t, last_step = start, time.perf_counter(), time.perf_counter(), start
    batches = _batches(loader)
    while step < cfg.steps:
        out = policy.loss(_to(next(batches), device), gen)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {float(loss)}")
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(policy)
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            rec = {"step": step, **{k: float(v.detach()) for k, v in out.items()}, "grad_norm": float(grad_norm),
                   "lr": opt.param_groups[0]["lr"], "steps_per_s": (step - last_step) / max(now - last_t, 1e-9)}
            last_t, last_step = now, step
            log.append(rec)
            if on_log:
                on_log(rec)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            ckpt = save_policy(policy, step_dir(cfg.out_dir, step), step, opt, extra, ema)
    seconds = time.perf_counter() - t0
    done = step - start
    return FinetuneResult(start, step, str(ckpt) if ckpt else "", seconds, done / seconds if seconds > 0 and done else math.nan,
                          len(data), log)
