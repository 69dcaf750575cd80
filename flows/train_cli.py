"""`mu0 pretrain`, `mu0 evaluate`, `mu0 predict`: thin typer wrappers (registered in flows/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()


def pretrain_cli(
    dataset: str = typer.Argument(..., help="Lance trace dataset root (written by `mu0 ingest`)"),
    out: Path = typer.Option(Path("runs/mu0"), help="checkpoint directory (<out>/step-<step:06d>/)"),
    preset: str = typer.Option("mu0-tiny", help="model preset: mu0-tiny | mu0-full"),
    steps: int = typer.Option(1000, min=1, help="total optimiser steps (a resumed run continues to this)"),
    batch_size: int = typer.Option(8, min=1),
    lr: float = typer.Option(1e-4, min=0.0),
    max_keypoints: Optional[int] = typer.Option(None, min=1, help="keypoints per sample (default: the preset's)"),
    eval_fraction: float = typer.Option(0.05, min=0.0, max=0.99, help="episodes held out for evaluation"),
    seed: int = typer.Option(0),
    num_workers: int = typer.Option(0, min=0, help="DataLoader worker processes (spawned)"),
    checkpoint_every: int = typer.Option(500, min=1),
    log_every: int = typer.Option(10, min=1),
    resume: bool = typer.Option(True, help="continue from the latest checkpoint in OUT"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """Pretrain μ0 on DATASET; checkpoints (safetensors + config + optimizer) every N steps, resumable."""
    from pydantic import ValidationError

    from flows.pretrain import pretrain
    from models.mu0_config import UnknownModelPresetError, get_model_preset

    try:
        get_model_preset(preset)
        cfg = _pretrain_config(preset, steps, batch_size, lr, max_keypoints, eval_fraction, seed, num_workers,
                               checkpoint_every, log_every, out, resume, device)
    except UnknownModelPresetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"]) from None
    report = pretrain(dataset, cfg)
    console.print(f"steps {report.start_step} -> {report.final_step} in {report.seconds:.1f} s "
                  f"({report.steps_per_s:.3g} steps/s); checkpoint: {report.checkpoint}")


def _pretrain_config(preset, steps, batch_size, lr, max_keypoints, eval_fraction, seed, num_workers, checkpoint_every,
                     log_every, out, resume, device):
    from tasks.train.config import PretrainConfig

    return PretrainConfig(model_preset=preset, steps=steps, batch_size=batch_size, lr=lr, max_keypoints=max_keypoints,
                          eval_fraction=eval_fraction, seed=seed, num_workers=num_workers, checkpoint_every=checkpoint_every,
                          log_every=log_every, out_dir=str(out), resume=resume, device=device)


def evaluate_cli(
    dataset: str = typer.Argument(..., help="Lance trace dataset root"),
    checkpoint: Optional[Path] = typer.Option(None, help="a step-<step:06d> directory; omit to score the baselines only"),
    split: str = typer.Option("eval", help="eval | train | all"),
    eval_fraction: float = typer.Option(0.05, min=0.0, max=1.0),
    keypoints: int = typer.Option(16, min=1, help="keypoints per slot"),
    samples: int = typer.Option(5, min=1, help="samples for best-of-N"),
    offsets: str = typer.Option("4,8,12", help="slot offsets per video"),
    history: bool = typer.Option(False, help="give the model the history (the headline protocol does not)"),
    depth: bool = typer.Option(False, help="give the model the depth image (the headline protocol does not)"),
    baselines: bool = typer.Option(True, help="also score zero motion, constant velocity, nearest neighbour"),
    text_embedding: bool = typer.Option(True, help="nearest neighbour keys on the caption's MiniLM embedding"),
    out: Optional[Path] = typer.Option(None, help="also write the tidy table as JSON here"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
):
    """Score a checkpoint and the baselines on DATASET (ADE/FDE/DTW/Fréchet, best-of-N, uv/depth/uvz)."""
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
                            n_samples=samples)
    rows = evaluate(dataset, str(checkpoint) if checkpoint else None, protocol, split=split, eval_fraction=eval_fraction,
                    baselines=baselines, nn_text_embedding=text_embedding, device=device)
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
):
    """Draw predicted (red) and true (green) traces of one frame's keypoints over the frame."""
    from tasks.train.predict import PredictionError, predict_frame

    try:
        path = predict_frame(str(checkpoint), dataset, episode, frame, str(out), keypoints, history, seed, device)
    except PredictionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from None
    console.print(f"wrote {path}")
