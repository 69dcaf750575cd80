"""The `evaluate` flow: a checkpoint and the three baselines scored by the headline protocol, and
optionally a `rollout` stage: a policy in closed loop on Meta-World (the `rollout` flow's task), so one
evaluation run can hold both what μ0 predicts and what a policy built on it achieves.

The model de-normalises with the `delta_scale` stored in its checkpoint; slots come from the
dataset's eval split (episode-level, the same hash as training). The nearest-neighbour baseline is
fitted on the train split with the same keypoint rule. The tidy table (method, dim, metric,
horizon, value) is returned and posted as a Prefect table artifact.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from rich.console import Console
from rich.table import Table

from tasks.sim.rollout_config import RolloutConfig
from tasks.train.evaluate import EvalProtocol

console = Console()


@task(name="fit-nearest-neighbour", cache_policy=NO_CACHE)
def fit_nearest_neighbour(dataset: str, stats, batch_cfg, eval_fraction: float, n_keypoints: int, max_samples: int,
                          text_embedding: bool, seed: int):
    from storage.torch_loader import LanceTraceDataset
    from tasks.train.baselines import NearestNeighbour
    from tasks.train.batches import SampleToItem, collate

    embed = None
    if text_embedding:
        from models.text_embedder import embed_texts

        embed = embed_texts
    tf = SampleToItem(batch_cfg, stats, train=False, seed=seed, n_keypoints=n_keypoints, use_depth=False)
    ds = LanceTraceDataset(dataset, split="train", eval_fraction=eval_fraction, transform=tf, read_depth=False)
    nn = NearestNeighbour(embed_text=embed)
    step = max(1, len(ds) // max_samples)
    picks = list(range(0, len(ds), step))[:max_samples]
    for i in range(0, len(picks), 16):
        nn.add(collate([ds[j] for j in picks[i : i + 16]]))
    return nn


def print_table(rows: list[dict], dim: str = "uvz", horizon: int = 32) -> None:
    metrics = sorted({r["metric"] for r in rows if r["dim"] == dim and r["horizon"] == horizon})
    table = Table(title=f"{dim} @ horizon {horizon}")
    table.add_column("method")
    for m in metrics:
        table.add_column(m, justify="right")
    by = {}
    for r in rows:
        if r["dim"] == dim and r["horizon"] == horizon:
            by.setdefault(r["method"], {})[r["metric"]] = r["value"]
    for method, vals in by.items():
        table.add_row(method, *[f"{vals.get(m, float('nan')):.4f}" for m in metrics])
    console.print(table)


@flow(name="evaluate", log_prints=True)
def evaluate(
    dataset: str,
    checkpoint: str | None = None,
    protocol: EvalProtocol = EvalProtocol(),
    split: str = "eval",
    eval_fraction: float = 0.05,
    baselines: bool = True,
    nn_max_samples: int = 2000,
    nn_text_embedding: bool = True,
    batch_size: int = 8,
    device: str = "auto",
    rollout: RolloutConfig | None = None,
    rollout_out: str = "runs/evaluate-rollout",
    rollout_runner: Literal["ray", "sequential"] = "ray",
) -> list[dict]:
    """Score CHECKPOINT (and the baselines) on DATASET's SPLIT with the protocol; returns the tidy table.

    With `rollout`, its policy also runs in closed loop (rollouts.json, videos under `rollout_out`; the
    success table as the `rollout-success` artifact)."""
    import torch

    from models.device import resolve_device
    from tasks.train.baselines import predict_constant_velocity, predict_zero_motion
    from tasks.train.batches import BatchConfig
    from tasks.train.evaluate import eval_batches, evaluate_methods, model_predictor, n_keypoints_scored
    from tasks.train.loop import checkpoint_stats
    from tasks.train.stats import ensure_trace_stats

    log = get_run_logger()
    model = None
    if checkpoint:
        from models.checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint)[0].to(resolve_device(device)).eval()
        stats = checkpoint_stats(checkpoint)
        batch_cfg = BatchConfig.for_model(model.cfg)
    else:
        stats = ensure_trace_stats(dataset)
        batch_cfg = BatchConfig()
    batches = eval_batches(dataset, stats, batch_cfg, protocol, split=split, eval_fraction=eval_fraction, batch_size=batch_size)
    if not batches:
        raise ValueError(f"{dataset}: no {split} slots at offsets {protocol.slot_offsets} (eval_fraction={eval_fraction})")
    log.info("%d slots, %d keypoints", sum(len(b["text"]) for b in batches), n_keypoints_scored(batches))
    predictors = {}
    if model is not None:
        predictors["mu0"] = model_predictor(model, stats, protocol.n_samples, seed=protocol.seed)
        if protocol.point_samples:
            predictors[f"mu0 (mean of {protocol.point_samples})"] = model_predictor(
                model, stats, protocol.n_samples, seed=protocol.seed, mean_of=protocol.point_samples)
    if baselines:
        nn = fit_nearest_neighbour(dataset, stats, batch_cfg, eval_fraction, protocol.n_keypoints, nn_max_samples,
                                   nn_text_embedding, protocol.seed)
        predictors.update({"zero_motion": predict_zero_motion, "constant_velocity": predict_constant_velocity,
                           "nearest_neighbour": nn.predict})
    with torch.no_grad():
        rows = evaluate_methods(batches, predictors, protocol)
    create_table_artifact(key="trace-eval", table=rows, description=f"trace prediction on {dataset} ({split})")
    print_table(rows)
    if rollout is not None:
        rollout_stage(rollout, rollout_out, rollout_runner)
    return rows


def rollout_stage(config: RolloutConfig, out: str, runner: str) -> None:
    from flows.rollout import rollouts
    from tasks.sim.success_rate import rate_cells

    summary = rollouts(out, config, runner, None, None, False)
    create_table_artifact(key="rollout-success", table=[rate_cells(r) for r in summary.rates],
                          description=f"success rates of {summary.policy}, 95% Wilson intervals")
    for r in summary.rates:
        console.print(f"rollout {r.task}: {r.successes}/{r.episodes} ({100 * r.rate:.1f}%, 95% CI "
                      f"{100 * r.ci_low:.1f}-{100 * r.ci_high:.1f}%)")
