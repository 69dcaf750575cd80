"""How well a policy checkpoint predicts held-out demonstrations: action error of sampled chunks, per task.

A cheap stand-in for closed-loop success when choosing training settings (learning rate, steps): it
needs no simulator, only demonstrations the policy did not train on. Errors are mean squared
differences in normalised action units (the checkpoint's own statistics) over the valid steps of
each chunk, beside the error of always predicting the training mean (0), so 1.0 means "no better
than the mean" whatever the task's scale.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from tasks.policy.demos import DemoSteps, collate, select_demonstrations
from tasks.policy.load import load_policy


def action_error(checkpoint: str, dataset: str, tasks: list[str] | None = None, samples: int = 192, seed: int = 0,
                 batch_size: int = 16) -> dict[str, dict[str, float]]:
    """{task: {"mse", "mean_mse", "ratio", "n"}} plus "all", on `samples` steps drawn with `seed` from DATASET."""
    policy, stats, _ = load_policy(checkpoint)
    policy.eval()
    demos = select_demonstrations(dataset, tasks)
    data = DemoSteps(dataset, demos, stats, policy.cfg.chunk, policy.image_size)
    tasks_of = {eid: (dataset_task or "") for eid, dataset_task in _tasks(dataset).items()}
    picked = np.random.default_rng(seed).choice(len(data), min(samples, len(data)), replace=False)
    err: dict[str, list[float]] = defaultdict(list)
    zero: dict[str, list[float]] = defaultdict(list)
    for start in range(0, len(picked), batch_size):
        idx = [int(i) for i in picked[start:start + batch_size]]
        batch = collate([data[i] for i in idx])
        pred = policy.sample(batch, torch.Generator().manual_seed(seed + start))
        mask = batch["action_mask"][..., None].float()
        denom = mask.sum((1, 2)) * pred.shape[-1]
        e = ((pred - batch["actions"]) ** 2 * mask).sum((1, 2)) / denom
        z = (batch["actions"] ** 2 * mask).sum((1, 2)) / denom
        for i, ei, zi in zip(idx, e.tolist(), z.tolist()):
            task = tasks_of[data.items[i][0]]
            for key in (task, "all"):
                err[key].append(ei)
                zero[key].append(zi)
    return {k: {"mse": float(np.mean(v)), "mean_mse": float(np.mean(zero[k])), "ratio": float(np.mean(v) / np.mean(zero[k])),
                "n": len(v)} for k, v in sorted(err.items())}


def _tasks(dataset: str) -> dict[str, str]:
    from storage.dataset import open_table

    rows = open_table(dataset, "episodes").to_table(columns=["episode_id", "task"]).to_pylist()
    return {r["episode_id"]: r["task"] for r in rows}
