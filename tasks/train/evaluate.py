"""The headline trace-prediction protocol (docs/method.md#eval-protocol), one code path for the model and
baselines.

Protocol: from every test video, the usable slots (sample frames with a keypoint of >= D valid
future steps, in time order) at offsets
[4, 8, 12] (<= 3 per video); 16 keypoints per slot picked with a fixed per-slot seed (so every
method sees the same ones); no history, no depth input; 5 samples for the best-of metrics.
Predictions are absolute (u, v normalised, z m) and scored by `tasks/trace_metrics.evaluate_traces`
on uv, depth and uvz at horizons 8, 16, 32. Deterministic predictors are repeated S times, so their
best-of columns equal the single-sample ones and every method has the same metric names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from pydantic import BaseModel, Field

from models.bspline import from_targets, render
from storage.torch_loader import LanceTraceDataset, TraceIndex
from tasks.train.batches import BatchConfig, SampleToItem, collate, to_device
from tasks.train.metrics import evaluate_traces
from tasks.train.stats import TraceStats

Predictor = Callable[[dict], np.ndarray]  # batch -> (S, B, N, H, 3) absolute


class EvalProtocol(BaseModel, frozen=True):
    """Which slots, keypoints and inputs an evaluation uses (defaults: the paper's headline protocol)."""

    slot_offsets: tuple[int, ...] = Field((4, 8, 12), description="positions in each video's list of usable slots")
    n_keypoints: int = Field(16, ge=1, description="keypoints per slot")
    use_history: bool = Field(False, description="give the model the keypoints' history")
    use_depth: bool = Field(False, description="give the model the depth image")
    n_samples: int = Field(5, ge=1, description="samples per slot for the best-of-N metrics")
    point_samples: int = Field(
        8, ge=0, description="a model's point prediction (its 'mean of K' row) averages K samples; 0: only the one-draw row"
    )
    horizons: tuple[int, ...] = Field((8, 16, 32), description="horizons the metrics are cut at")
    seed: int = Field(0, description="seed of the keypoint choice and the model's sampling")


def headline_slots(index: TraceIndex, offsets: Iterable[int]) -> TraceIndex:
    """Per episode, the sample rows at the given positions of its frame-sorted slots (<= len(offsets))."""
    keep = np.zeros(len(index.rows), bool)
    for eid in dict.fromkeys(index.episode_ids.tolist()):
        rows = np.flatnonzero(index.episode_ids == eid)
        rows = rows[np.argsort(index.frames[rows], kind="stable")]
        for k in offsets:
            if k < rows.size:
                keep[rows[k]] = True
    return index.select(keep)


def eval_batches(
    root: str,
    stats: TraceStats,
    batch_cfg: BatchConfig,
    protocol: EvalProtocol,
    split: str = "eval",
    eval_fraction: float = 0.05,
    batch_size: int = 8,
    max_slots: int | None = None,
) -> list[dict]:
    """The protocol's slots of `split` as collated batches (kept in memory: a few hundred slots); only the
    first `max_slots` of them are read when given."""
    index = TraceIndex.build(root).split(split, eval_fraction).usable(root, batch_cfg.n_ctrl, batch_cfg.horizon)
    slots = headline_slots(index, protocol.slot_offsets)
    if max_slots is not None:
        slots = slots.select(np.arange(len(slots.rows)) < max_slots)
    tf = SampleToItem(batch_cfg, stats, train=False, seed=protocol.seed, n_keypoints=protocol.n_keypoints,
                      use_history=protocol.use_history, use_depth=protocol.use_depth)
    ds = LanceTraceDataset(root, split="all", transform=tf, read_depth=protocol.use_depth, index=slots)
    items = [ds[i] for i in range(len(ds))]
    return [collate(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def truncate_at_done(traj: torch.Tensor, current: torch.Tensor, still_going: torch.Tensor) -> torch.Tensor:
    """Freeze each trace (B, N, H, 3) at its last step before the done head first says < 0.5."""
    alive = torch.cumprod((still_going >= 0.5).to(traj.dtype), dim=-1)  # (B, N, H)
    last = (alive.sum(-1, keepdim=True) - 1).clamp(min=0).long()  # index of the last alive step
    hold = torch.gather(traj, 2, last[..., None].expand(*last.shape, 3))  # (B, N, 1, 3)
    hold = torch.where(alive.sum(-1, keepdim=True)[..., None] > 0, hold, current[:, :, None, :])
    return torch.where(alive[..., None] > 0, traj, hold)


def model_predictor(model, stats: TraceStats, n_samples: int, seed: int = 0, num_steps: int | None = None,
                    mean_of: int = 0) -> Predictor:
    """Samples of `model.sample(batch)` rendered to H steps and de-normalised: (S, B, N, H, 3).

    `mean_of` K > 0: one prediction, the average of K samples (1, B, N, H, 3) -- the point estimate
    that minimises expected displacement when the future is uncertain, where one draw pays for the spread.
    """
    scale = torch.tensor(stats.delta_scale, dtype=torch.float32)
    steps = num_steps or model.cfg.num_sample_steps

    @torch.no_grad()
    def predict(batch: dict) -> np.ndarray:
        dev = next(model.parameters()).device
        gen = torch.Generator(device=dev).manual_seed(seed)
        H = batch["future_valid"].shape[-1]
        cur = batch["current_uvz"].float()
        on_dev = to_device(batch, dev)
        out = []
        for _ in range(mean_of or n_samples):
            ctrl, still_going = model.sample(on_dev, num_steps=steps, generator=gen)
            traj = from_targets(render(ctrl.float().cpu(), H), cur, scale)
            out.append(truncate_at_done(traj, cur, still_going.float().cpu()[..., :H]).numpy())
        samples = np.stack(out)
        return samples.mean(axis=0, keepdims=True) if mean_of else samples

    return predict


def score(batches: list[dict], predict: Predictor, n_samples: int, horizons: tuple[int, ...]) -> dict[str, float]:
    """Metrics of one predictor over all real keypoints of the batches."""
    preds, gts, valids = [], [], []
    for b in batches:
        p = np.asarray(predict(b), np.float64)
        if p.shape[0] == 1 and n_samples > 1:
            p = np.repeat(p, n_samples, axis=0)
        m = b["keypoint_mask"].numpy()
        preds.append(p[:, m])
        gts.append(b["future_uvz"].numpy()[m])
        valids.append(b["future_valid"].numpy()[m])
    if not preds:
        return {}
    return evaluate_traces(np.concatenate(preds, 1), np.concatenate(gts), np.concatenate(valids), horizons)


def evaluate_methods(batches: list[dict], predictors: dict[str, Predictor], protocol: EvalProtocol) -> list[dict]:
    """Tidy rows {method, dim, metric, horizon, value} for every predictor, same slots and keypoints."""
    rows = []
    for name, fn in predictors.items():
        for key, value in score(batches, fn, protocol.n_samples, protocol.horizons).items():
            dim, rest = key.split("/")
            metric, h = rest.split("@")
            rows.append({"method": name, "dim": dim, "metric": metric, "horizon": int(h), "value": float(value)})
    return rows


def pivot(rows: list[dict], dim: str = "uvz", horizon: int = 32, metrics: tuple[str, ...] = ("ade", "fde")) -> list[dict]:
    """One row per method with the chosen metrics at one dim/horizon (for printing)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["dim"] == dim and r["horizon"] == horizon and r["metric"] in metrics:
            out.setdefault(r["method"], {"method": r["method"]})[r["metric"]] = r["value"]
    return list(out.values())


def n_keypoints_scored(batches: list[dict]) -> int:
    return int(sum(int(b["keypoint_mask"].sum()) for b in batches))
