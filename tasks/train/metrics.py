"""Trace-prediction metrics and trivial baselines (docs/method.md#eval-metrics).

All arrays are absolute coordinates (u, v normalised to [-1, 1], z in meters) -- de-normalise model
outputs before calling. Shapes: pred / gt (N, H, C), valid (N, H) bool. Every metric returns a
per-trajectory (N,) array with NaN where a trajectory has no valid step, so callers average with
``nanmean``. Invalid gt entries may hold padding (-inf); they are never read.

DTW and Frechet compare the *valid steps* of pred and gt (same step set, in time order), so a trace
truncated by the done-mask is scored on what it covers. DTW is normalised by the number of valid
steps so it is comparable with ADE (DTW <= ADE always, since the diagonal is one alignment path).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
DIMS: dict[str, slice] = {"uv": slice(0, 2), "depth": slice(2, 3), "uvz": slice(0, 3)}


def _prep(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if pred.shape != gt.shape or gt.shape[:-1] != valid.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape}, gt {gt.shape}, valid {valid.shape}")
    zero = np.zeros((), dtype=np.float64)
    return np.where(valid[..., None], pred, zero), np.where(valid[..., None], gt, zero), valid


def _step_err(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g, m = _prep(pred, gt, valid)
    return np.linalg.norm(p - g, axis=-1), m


def ade(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean L2 over valid steps, per trajectory."""
    err, m = _step_err(pred, gt, valid)
    n = m.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (err * m).sum(-1) / n, np.nan)


def fde(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """L2 at the last valid step, per trajectory."""
    err, m = _step_err(pred, gt, valid)
    H = m.shape[-1]
    last = H - 1 - np.argmax(m[..., ::-1], axis=-1)
    out = np.take_along_axis(err, last[..., None], axis=-1)[..., 0]
    return np.where(m.any(-1), out, np.nan)


def _compact(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid steps moved to the front (in order), time-major (H, N, C), plus the counts (N,).

    The dynamic programmes below only look at smaller indices, so the n x n top-left block of each
    padded problem gives the exact result for that trajectory; one vectorised DP serves all N.
    """
    p, g, m = _prep(pred, gt, valid)
    order = np.argsort(~m, axis=-1, kind="stable")[..., None]
    p = np.take_along_axis(p, order, axis=-2).transpose(1, 0, 2).copy()
    g = np.take_along_axis(g, order, axis=-2).transpose(1, 0, 2).copy()
    return p, g, m.sum(-1)


def _dp(p: np.ndarray, g: np.ndarray, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Accumulated cost (H, H, N) of L2 cells |p_i - g_j| with moves (i-1, j), (i, j-1), (i-1, j-1).

    Cost rows are built one pred step at a time (no (N, H, H, C) temporary); batch-last keeps each
    cell's N values contiguous and the inf border avoids branches.
    """
    H, N = p.shape[:2]
    acc = np.full((H + 1, H + 1, N), np.inf)
    for i in range(1, H + 1):
        row = np.sqrt(((p[i - 1][None] - g) ** 2).sum(-1))  # (H, N): pred step i-1 vs every gt step
        for j in range(1, H + 1):
            if i == 1 and j == 1:
                acc[1, 1] = row[0]
                continue
            prev = np.minimum(np.minimum(acc[i - 1, j], acc[i, j - 1]), acc[i - 1, j - 1])
            acc[i, j] = combine(row[j - 1], prev)
    return acc[1:, 1:]


def _at_corner(acc: np.ndarray, n: np.ndarray) -> np.ndarray:
    k = np.maximum(n - 1, 0)
    out = acc[k, k, np.arange(acc.shape[-1])]
    return np.where(n > 0, out, np.nan)


def dtw(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Dynamic-time-warping cost (L2 per matched pair) over valid steps, divided by their count."""
    p, g, n = _compact(pred, gt, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _at_corner(_dp(p, g, np.add), n) / np.where(n > 0, n, 1)


def frechet(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Discrete Frechet distance (L2) between the valid steps of pred and gt."""
    p, g, n = _compact(pred, gt, valid)
    return _at_corner(_dp(p, g, np.maximum), n)


METRICS: dict[str, Metric] = {"ade": ade, "fde": fde, "dtw": dtw, "frechet": frechet}
_BEST_OF_NAMES = {"ade": "minADE", "fde": "minFDE", "dtw": "minDTW", "frechet": "minFrechet"}


def best_of(preds: np.ndarray, gt: np.ndarray, valid: np.ndarray, metric: str | Metric) -> np.ndarray:
    """Per-trajectory minimum of ``metric`` over S samples (S, N, H, C) -> (N,); NaN if no valid step."""
    fn = METRICS[metric] if isinstance(metric, str) else metric
    return _nanmin0(_per_sample(fn, np.asarray(preds), gt, valid))


def _per_sample(fn: Metric, preds: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Metric for every sample (S, N): samples are folded into the batch so the DP runs once."""
    S, N = preds.shape[:2]
    g = np.broadcast_to(gt, (S,) + gt.shape).reshape((S * N,) + gt.shape[1:])
    m = np.broadcast_to(valid, (S,) + valid.shape).reshape(S * N, valid.shape[-1])
    return fn(preds.reshape((S * N,) + preds.shape[2:]), g, m).reshape(S, N)


def _nanmin0(vals: np.ndarray) -> np.ndarray:
    finite = ~np.isnan(vals)
    return np.where(finite.any(0), np.where(finite, vals, np.inf).min(0), np.nan)


def evaluate_traces(
    pred_samples: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray,
    horizons: tuple[int, ...] = (8, 16, 32),
) -> dict[str, float]:
    """Dataset-level metrics, keys ``"{dim}/{metric}@{h}"`` for dim in uv/depth/uvz.

    Single-sample metrics (ade, fde, dtw, frechet) use sample 0 -- the deterministic/first draw, as
    a user would get from one call. Best-of metrics (``minADE{S}`` ...) use all S samples, so with
    the headline protocol's S=5 they read ``minADE5``. Each value is the nanmean over trajectories
    with at least one valid step inside the horizon; horizons longer than H are skipped.
    """
    preds = np.asarray(pred_samples, dtype=np.float64)
    if preds.ndim == 3:
        preds = preds[None]
    gt = np.asarray(gt, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    S, _, H, _ = preds.shape
    out: dict[str, float] = {}
    for h in horizons:
        if h > H:
            continue
        ps, g, m = preds[:, :, :h], gt[:, :h], valid[:, :h]
        for dim, sl in DIMS.items():
            for name, fn in METRICS.items():
                vals = _per_sample(fn, ps[..., sl], g[..., sl], m)  # (S, N)
                out[f"{dim}/{name}@{h}"] = _nanmean(vals[0])
                out[f"{dim}/{_BEST_OF_NAMES[name]}{S}@{h}"] = _nanmean(_nanmin0(vals))
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def zero_motion(current: np.ndarray, n_steps: int) -> np.ndarray:
    """Baseline: every future step stays at the current position -> (N, H, C)."""
    cur = np.asarray(current, dtype=np.float64)
    return np.repeat(cur[:, None, :], n_steps, axis=1)


def constant_velocity(
    history: np.ndarray | None,
    current: np.ndarray,
    n_steps: int,
    history_valid: np.ndarray | None = None,
) -> np.ndarray:
    """Baseline: extrapolate the last history step -> current velocity, ``cur + (k+1) * v``.

    History runs oldest -> newest (index -1 is t-1). Keypoints without a usable last history step
    (no history, masked, or non-finite) fall back to zero motion.
    """
    cur = np.asarray(current, dtype=np.float64)
    if history is None or np.asarray(history).shape[1] == 0:
        return zero_motion(cur, n_steps)
    last = np.asarray(history, dtype=np.float64)[:, -1]
    ok = np.all(np.isfinite(last), axis=-1)
    if history_valid is not None:
        ok &= np.asarray(history_valid, dtype=bool)[:, -1]
    vel = np.where(ok[:, None], cur - np.where(ok[:, None], last, 0.0), 0.0)
    k = np.arange(1, n_steps + 1, dtype=np.float64)
    return cur[:, None, :] + k[None, :, None] * vel[:, None, :]
