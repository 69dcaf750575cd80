"""`mu0 pretrain`, `mu0 evaluate`, `mu0 predict`: thin typer wrappers (registered in flows/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from flows.config_cli import CONFIG_HELP, SET_HELP, settle

console = Console()


def pretrain_cli(
    dataset: str = typer.Argument(..., help="Lance trace dataset root (written by `mu0 ingest`)"),
    out: Optional[Path] = typer.Option(None, help="checkpoint directory (<out>/step-<step:06d>/); default runs/mu0"),
    preset: str = typer.Option("mu0-tiny", help="model preset: mu0-tiny | mu0-full"),
    steps: Optional[int] = typer.Option(None, min=1, help="total optimiser steps (a resumed run continues to this); default 1000"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="default 8"),
    lr: Optional[float] = typer.Option(None, min=0.0, help="default 1e-4"),
    max_keypoints: Optional[int] = typer.Option(None, min=1, help="keypoints per sample (sets model.max_keypoints)"),
    eval_fraction: Optional[float] = typer.Option(None, min=0.0, max=0.99, help="episodes held out for evaluation; default 0.05"),
    seed: Optional[int] = typer.Option(None, help="seed of initialisation, data order and augmentation (sets seed and model.seed)"),
    num_workers: Optional[int] = typer.Option(None, min=0, help="DataLoader worker processes (spawned); default 0"),
    checkpoint_every: Optional[int] = typer.Option(None, min=1, help="default 500"),
    log_every: Optional[int] = typer.Option(None, min=1, help="default 10"),
    resume: Optional[bool] = typer.Option(None, help="continue from the latest checkpoint in OUT (default: yes)"),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (default auto)"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE.yaml", help=CONFIG_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
):
    """Pretrain μ0 on DATASET; checkpoints (safetensors + config + optimizer) every N steps, resumable.

    Settings apply in order: the preset, --config FILE, the flags below, --set KEY=VALUE (e.g. --set model.lora_rank=8);
    `mu0 config show --preset mu0-tiny` prints them all.
    """
    from flows.pretrain import pretrain
    from models.mu0_config import UnknownModelPresetError, get_model_preset
    from tasks.train.config import PretrainConfig

    try:
        base = PretrainConfig(model=get_model_preset(preset))
    except UnknownModelPresetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    cfg = settle(base, config, {
        "--out": {"out_dir": None if out is None else str(out)}, "--steps": {"steps": steps},
        "--batch-size": {"batch_size": batch_size}, "--lr": {"lr": lr}, "--max-keypoints": {"model.max_keypoints": max_keypoints},
        "--eval-fraction": {"eval_fraction": eval_fraction}, "--seed": {"seed": seed, "model.seed": seed},
        "--num-workers": {"num_workers": num_workers}, "--checkpoint-every": {"checkpoint_every": checkpoint_every},
        "--log-every": {"log_every": log_every}, "--resume": {"resume": resume}, "--device": {"device": device},
    }, settings)
    report = pretrain(dataset, cfg)
    console.print(f"steps {report.start_step} -> {report.final_step} in {report.seconds:.1f} s "
                  f"({report.steps_per_s:.3g} steps/s); checkpoint: {report.checkpoint}")


def evaluate_cli(
    dataset: str = typer.Argument(..., help="Lance trace dataset root"),
    checkpoint: Optional[Path] = typer.Option(None, help="a step-<step:06d> directory; omit to score the baselines only"),
    split: str = typer.Option("eval", help="eval | train | all"),
    eval_fraction: float = typer.Option(0.05, min=0.0, max=1.0),
    keypoints: int = typer.Option(16, min=1, help="keypoints per slot"),
    samples: int = typer.Option(5, min=1, help="samples for best-of-N"),
    point_samples: int = typer.Option(8, min=0, help="the model's point prediction averages this many samples (0: off)"),
    offsets: str = typer.Option("4,8,12", help="slot offsets per video"),
    history: bool = typer.Option(False, help="give the model the history (the headline protocol does not)"),
    depth: bool = typer.Option(False, help="give the model the depth image (the headline protocol does not)"),
    baselines: bool = typer.Option(True, help="also score zero motion, constant velocity, nearest neighbour"),
    text_embedding: bool = typer.Option(True, help="nearest neighbour keys on the caption's MiniLM embedding"),
    out: Optional[Path] = typer.Option(None, help="also write the tidy table as JSON here"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    rollout_policy: Optional[str] = typer.Option(None, help="rollout stage: 'scripted' or a `mu0 finetune` checkpoint directory"),
    rollout_tasks: str = typer.Option("reach,button-press,drawer-open,pick-place", help="rollout stage: tasks or a named set"),
    rollout_episodes: int = typer.Option(20, min=1, help="rollout stage: episodes per task (unseen seeds from 100000)"),
    rollout_out: Path = typer.Option(Path("runs/evaluate-rollout"), help="rollout stage: rollouts.json and videos"),
):
    """Score a checkpoint and the baselines on DATASET (ADE/FDE/DTW/Fréchet, best-of-N, uv/depth/uvz);
    with --rollout-policy, also a policy's closed-loop success on Meta-World."""
    from flows.evaluate import evaluate
    from tasks.train.evaluate import EvalProtocol

    if split not in ("eval", "train", "all"):
        raise typer.BadParameter("must be eval, train or all", param_hint="--split")
    try:
        slot_offsets = tuple(int(x) for x in offsets.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter("comma-separated integers, e.g. 4,8,12", param_hint="--offsets") from None
    if checkpoint is not None and not (checkpoint / "trainer_state.json").exists():
        raise typer.BadParameter(f"{checkpoint} is not a checkpoint directory (no trainer_state.json)", param_hint="--checkpoint")
    protocol = EvalProtocol(slot_offsets=slot_offsets, n_keypoints=keypoints, use_history=history, use_depth=depth,
                            n_samples=samples, point_samples=point_samples)
    rollout = None
    if rollout_policy is not None:
        from pydantic import ValidationError

        from tasks.sim.rollout_config import PolicySpec, RolloutConfig

        scripted = rollout_policy == "scripted"
        try:
            rollout = RolloutConfig(policy=PolicySpec(kind="scripted" if scripted else "checkpoint",
                                                      checkpoint=None if scripted else rollout_policy),
                                    tasks=rollout_tasks, episodes=rollout_episodes)
        except (ValidationError, ValueError) as exc:
            raise typer.BadParameter(str(exc).splitlines()[-1], param_hint="--rollout-policy/--rollout-tasks") from None
    rows = evaluate(dataset, str(checkpoint) if checkpoint else None, protocol, split=split, eval_fraction=eval_fraction,
                    baselines=baselines, nn_text_embedding=text_embedding, device=device, rollout=rollout,
                    rollout_out=str(rollout_out))
    if out is not None:
        out.write_text(json.dumps(rows, indent=1))
        console.print(f"wrote {len(rows)} rows to {out}")


def predict_cli(
    checkpoint: Path = typer.Option(..., help="a step-<step:06d> checkpoint directory"),
    dataset: str = typer.Option(..., help="Lance trace dataset root"),
    episode: str = typer.Option(..., help="episode id (a unique prefix is enough)"),
    frame: int = typer.Option(..., min=0, help="stored frame index t (a frame with samples)"),
    out: Path = typer.Option(Path("prediction.png"), help="PNG to write"),
    keypoints: int = typer.Option(16, min=1),
    history: bool = typer.Option(False, help="give the model the keypoints' history"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    mean_of: int = typer.Option(8, min=0, help="draw the mean of this many samples (the evaluation's point prediction); 0: one sample"),
):
    """Draw predicted (red) and true (green) traces of one frame's keypoints over the frame."""
    from tasks.train.predict import PredictionError, predict_frame

    try:
        path = predict_frame(str(checkpoint), dataset, episode, frame, str(out), keypoints, history, seed, device, mean_of)
    except PredictionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from None
    console.print(f"wrote {path}")
