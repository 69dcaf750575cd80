"""The μ0 pretraining loop and its checkpoints (no Prefect here; `flows/pretrain.py` wraps it).

A checkpoint directory `<out>/step-<step:06d>/` is `models/checkpoint.py`'s (safetensors weights and
optimizer state, config.json, trainer_state.json with the step) plus `run.json` (dataset, run
config) and `trace_stats.json`: the `delta_scale` the targets were scaled with belongs to the weights, so
evaluation and prediction de-normalise with it, not with whatever the dataset holds later.
Resuming loads the latest directory and continues the step count. With held-out data (`eval_dataset`
or an `eval_fraction` split) every checkpoint is scored (`tasks/train/held_out.py`) into its
`held_out.json` and `<out>/curves.json`; `best_checkpoint` picks the lowest held-out loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.checkpoint import latest_checkpoint, load_checkpoint, load_optimizer_state, save_checkpoint
from models.device import resolve_device
from models.mu0 import Mu0
from storage.torch_loader import LanceTraceDataset, make_loader
from tasks.train.batches import BatchConfig, SampleToItem, collate, to_device
from tasks.train.config import PretrainConfig
from tasks.train.held_out import HeldOutScorer
from tasks.train.stats import TraceStats

LOSS_KEYS = ("loss", "flow", "done", "rigid")


def step_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / f"step-{step:06d}"


def read_run(ckpt: str | Path) -> dict:
    """The run settings saved beside the weights (dataset, PretrainConfig)."""
    path = Path(ckpt) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def checkpoint_stats(ckpt: str | Path) -> TraceStats:
    """The trace statistics the checkpoint was trained with."""
    path = Path(ckpt) / "trace_stats.json"
    if not path.exists():
        raise FileNotFoundError(f"{ckpt}: no trace_stats.json (not written by the pretrain flow?)")
    return TraceStats.model_validate_json(path.read_text())


def save_training_checkpoint(out_dir, step: int, model: Mu0, opt: torch.optim.Optimizer, cfg: PretrainConfig,
                             dataset: str, stats: TraceStats) -> Path:
    """models/checkpoint's directory plus trace_stats.json and run.json, staged then renamed as a whole."""
    final = step_dir(out_dir, step)
    staging = final.with_name(final.name + ".staging")  # not matched by latest_checkpoint
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(model, staging, step, opt)
    (staging / "trace_stats.json").write_text(stats.model_dump_json(indent=2))
    (staging / "run.json").write_text(json.dumps({"dataset": dataset, "config": cfg.model_dump(mode="json")}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """The learning rate of optimiser step `step` (0-based): a function of the step, so resuming needs no state."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.min_lr_ratio * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def read_curve(out_dir: str | Path) -> list[dict]:
    """Held-out scores per checkpoint step of a run (empty when none were taken)."""
    path = Path(out_dir) / "curves.json"
    return json.loads(path.read_text()) if path.exists() else []


def best_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint with the lowest held-out loss; the latest when no checkpoint was scored."""
    scored = []
    for d in Path(out_dir).glob("step-[0-9]*"):
        f = d / "held_out.json"
        if d.is_dir() and f.exists():
            scored.append((json.loads(f.read_text())["held_out_loss"], d))
    return min(scored)[1] if scored else latest_checkpoint(out_dir)


def _held_out_scorer(dataset: str, cfg: PretrainConfig, stats: TraceStats, bcfg: BatchConfig) -> HeldOutScorer | None:
    if cfg.eval_dataset:
        scorer = HeldOutScorer(cfg.eval_dataset, "all", 0.0, stats, bcfg, cfg.held_out_slots)
    elif cfg.eval_fraction > 0:
        scorer = HeldOutScorer(dataset, "eval", cfg.eval_fraction, stats, bcfg, cfg.held_out_slots)
    else:
        return None
    return scorer or None


def _score_checkpoint(scorer: HeldOutScorer, model: Mu0, ckpt: Path, step: int, out_dir: str | Path) -> dict:
    rec = {"step": step, **scorer(model)}
    (ckpt / "held_out.json").write_text(json.dumps(rec, indent=2))
    curve = [r for r in read_curve(out_dir) if r["step"] != step] + [rec]
    (Path(out_dir) / "curves.json").write_text(json.dumps(sorted(curve, key=lambda r: r["step"]), indent=1))
    return rec


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def _batches(loader) -> Iterator[dict]:
    while True:  # epochs until the step budget is spent
        yield from loader


@dataclass
class TrainResult:
    start_step: int
    final_step: int
    checkpoint: str
    seconds: float
    steps_per_s: float
    log: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    best_checkpoint: str = ""


def _enable_checkpointing(model: torch.nn.Module) -> None:
    for name in ("gradient_checkpointing_enable", "enable_gradient_checkpointing"):
        fn = getattr(model, name, None)
        if callable(fn):
            fn()
            return
    if hasattr(model, "gradient_checkpointing"):
        model.gradient_checkpointing = True


def train(dataset: str, cfg: PretrainConfig, stats: TraceStats, on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Run (or resume) pretraining up to `cfg.steps`; returns where it ended, the logged losses and held-out curve."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    latest = latest_checkpoint(cfg.out_dir) if cfg.resume else None
    if latest is not None:
        model, start = load_checkpoint(latest)  # the checkpoint's own config.json: its shapes go with its weights
    else:
        model, start = Mu0(cfg.model), 0
    model.to(device).train()
    opt = make_optimizer(model, cfg)
    if latest is not None:
        load_optimizer_state(opt, latest)
    cuda = device.type == "cuda"
    if cuda and cfg.gradient_checkpointing:
        _enable_checkpointing(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and cfg.bf16 else contextlib.nullcontext()

    bcfg = BatchConfig.for_model(model.cfg)
    ds = LanceTraceDataset(dataset, split="train", eval_fraction=cfg.eval_fraction,
                           transform=SampleToItem(bcfg, stats, train=True, seed=cfg.seed + start), read_depth=bcfg.use_depth,
                           min_valid=bcfg.n_ctrl, horizon=bcfg.horizon)
    if len(ds) == 0:
        raise ValueError(f"{dataset}: the train split is empty (eval_fraction={cfg.eval_fraction})")
    loader = make_loader(ds, cfg.batch_size, collate, shuffle=True, num_workers=cfg.num_workers, seed=cfg.seed + start,
                         drop_last=len(ds) >= cfg.batch_size)
    scorer = _held_out_scorer(dataset, cfg, stats, bcfg)
    log: list[dict] = []
    step, t0, last_t, last_step = start, time.perf_counter(), time.perf_counter(), start
    ckpt = latest
    batches = _batches(loader)
    while step < cfg.steps:
        batch = to_device(next(batches), device)
        with autocast:
            losses = model.loss(batch)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {float(loss)}")
        opt.zero_grad(set_to_none=True)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            rec = {"step": step, **{k: float(losses[k].detach()) for k in LOSS_KEYS if k in losses},
                   "grad_norm": float(grad_norm), "lr": opt.param_groups[0]["lr"],
                   "steps_per_s": (step - last_step) / max(now - last_t, 1e-9)}
            last_t, last_step = now, step
            log.append(rec)
            if on_log:
                on_log(rec)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            ckpt = save_training_checkpoint(cfg.out_dir, step, model, opt, cfg, dataset, stats)
            if scorer is not None:
                rec = _score_checkpoint(scorer, model, ckpt, step, cfg.out_dir)
                if on_log:
                    on_log(rec)
    seconds = time.perf_counter() - t0
    done = step - start
    best = best_checkpoint(cfg.out_dir) if scorer is not None else ckpt
    return TrainResult(start, step, str(ckpt) if ckpt else "", seconds, done / seconds if seconds > 0 and done else math.nan, log,
                       read_curve(cfg.out_dir), str(best) if best else "")
