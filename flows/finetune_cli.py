"""`mu0 finetune`: a thin typer wrapper around the `finetune` flow (registered in flows/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def finetune_cli(
    dataset: str = typer.Argument(..., help="Lance dataset with demonstrations (written by `mu0 ingest`)"),
    mu0: Optional[Path] = typer.Option(None, "--mu0", help="μ0 checkpoint: a step-<step:06d> directory or a pretrain run "
                                       "directory (required, except for the π0 baseline)"),
    out: Path = typer.Option(..., help="checkpoint directory (<out>/step-<step:06d>/)"),
    preset: str = typer.Option("policy-tiny", help="policy preset: policy-tiny | policy-full | pi0-tiny (the π0-style baseline, no μ0)"),
    tasks: Optional[str] = typer.Option(None, help="comma-separated tasks to train on (episodes.task); default all"),
    demos_per_task: Optional[int] = typer.Option(None, min=1, help="at most N demonstrations per task"),
    steps: int = typer.Option(300, min=1, help="total optimiser steps (a resumed run continues to this)"),
    batch_size: int = typer.Option(8, min=1),
    lr: float = typer.Option(1e-4, min=0.0, help="AdamW peak learning rate (warm-up then cosine)"),
    ema_decay: Optional[float] = typer.Option(None, help="checkpoints serve an EMA of the weights with this decay "
                                               "(openpi: 0.99); default: the last step's weights"),
    traces: bool = typer.Option(True, "--traces/--no-traces", help="--no-traces: the 'VLM + action expert' ablation"),
    checkpoint_every: int = typer.Option(100, min=1),
    log_every: int = typer.Option(10, min=1),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(True, help="continue from the latest checkpoint in OUT"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE: a field of the policy preset (e.g. grid=16, depth=6); "
                                   "repeatable"),
):
    """Train the downstream action expert on DATASET's demonstrations, μ0 frozen (or, with --preset pi0-tiny, the
    π0-style baseline); resumable safetensors checkpoints."""
    from pydantic import ValidationError

    from flows.finetune import finetune
    from models.policy.config import get_policy_preset
    from tasks.config import SettingError, error_text, parse_assignments
    from tasks.policy.config import FinetuneConfig
    from tasks.policy.load import resolve_mu0

    try:
        kind = get_policy_preset(preset).kind
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    if kind == "mu0":
        if mu0 is None:
            raise typer.BadParameter(f"preset {preset!r} needs a μ0 checkpoint (train one with `mu0 pretrain`)",
                                     param_hint="--mu0")
        try:
            resolve_mu0(mu0)
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mu0") from None
    try:
        policy = parse_assignments(set_)
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None
    try:
        cfg = FinetuneConfig(mu0_checkpoint=str(mu0 or ""), out_dir=str(out), preset=preset, tasks=tasks, demos_per_task=demos_per_task,
                             steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, use_traces=traces, checkpoint_every=checkpoint_every,
                             log_every=log_every, seed=seed, resume=resume, device=device, policy=policy)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(error_text(e) for e in exc.errors()),
                                 param_hint="--set" if policy else None) from None
    report = finetune(dataset, cfg)
    console.print(f"steps {report.start_step} -> {report.final_step} in {report.seconds:.1f} s "
                  f"({report.steps_per_s:.3g} steps/s); checkpoint: {report.checkpoint}")
