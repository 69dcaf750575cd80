"""Build per-frame training samples: reproject, select keypoints, retarget (METHOD.md stages 4-6).

For every anchor frame t, each moving track that is visible and on-screen at t becomes a keypoint;
its world trajectory is seen through camera t (ego-motion removed) and arc-length retargeted forward
(future, index 0 = t) and backward (history, index 0 = t, time reversed).

Invalid entries are NaN, not the published pipeline's -inf padding: -inf looks like a number, and
column statistics, min/max and percentile scales (delta_scale) computed over the stored Lance/Arrow
float columns are wrecked by a single -inf, while NaN is the standard "no value" that nan-aware
reductions skip and that poisons, visibly, any arithmetic which forgets the validity mask.
"""

from __future__ import annotations

import numpy as np

from tasks.config import RetargetConfig
from tasks.geometry import inside_image
from tasks.reproject import uvz_through
from tasks.retarget import finite_points, retarget
from tasks.types import Episode, Samples


def empty_samples(future_len: int, history_len: int) -> Samples:
    """Samples with no frame (offsets [0]): an episode with nothing that moves."""
    return Samples(
        frames=np.zeros(0, np.int32),
        offsets=np.zeros(1, np.int64),
        track_index=np.zeros(0, np.int32),
        keypoints_uv=np.zeros((0, 2), np.float32),
        future=np.zeros((0, future_len, 3), np.float32),
        future_valid=np.zeros((0, future_len), bool),
        history=np.zeros((0, history_len, 3), np.float32),
        history_valid=np.zeros((0, history_len), bool),
        cluster_id=np.zeros(0, np.int32),
    )


def frame_samples(
    t: int, idx: np.ndarray, xyz: np.ndarray, known: np.ndarray, ep: Episode, cfg: RetargetConfig
) -> tuple[np.ndarray, ...] | None:
    """(track_index, uv, future, future_valid, history, history_valid) of anchor frame t, or None.

    `idx` are candidate tracks (moving, known at t). The retargeting speed is computed over the
    frame's keypoints (moving, known and on-screen at t) before the min_future_steps drop: the drop
    only removes keypoints about to vanish, and recomputing would shift every other keypoint's time
    warp (and so its validity) again.
    """
    width, height = ep.image_size
    uvz = uvz_through(t, xyz[idx], ep.K, ep.w2c)  # (n, T, 3)
    ok = known[idx] & finite_points(uvz) & (uvz[..., 2] > 0)  # = uvz_valid(uvz)
    onscreen = ok[:, t] & inside_image(uvz[:, t, :2], width, height)
    idx, uvz, ok = idx[onscreen], uvz[onscreen], ok[onscreen]
    if idx.size == 0:
        return None
    fut, fut_ok = retarget(uvz[:, t:], ok[:, t:], width, height, cfg, cfg.future_len)
    keep = fut_ok[:, 1:].sum(1) >= cfg.min_future_steps  # steps beyond the anchor
    if not keep.any():
        return None
    hist, hist_ok = retarget(uvz[keep, t::-1], ok[keep, t::-1], width, height, cfg, cfg.history_len)
    return idx[keep], uvz[keep, t, :2], fut[keep], fut_ok[keep], hist, hist_ok


def build_samples(ep: Episode, cfg: RetargetConfig) -> Episode:
    """Fill ep.samples (float32, NaN where invalid) from tracks_xyz, visible and is_moving.

    A track's world position is known where it is visible and finite. Keypoints need at least
    `min_future_steps` valid future samples *beyond* the anchor (future[0] is the anchor itself and
    always valid, so counting it would keep keypoints with no motion target at all); frames left
    without keypoints are skipped. `keypoints_uv` is the reprojection through camera t, equal to the
    tracked pixel up to lift round-off, so that future[0] == keypoint exactly (targets are
    anchor-relative downstream).
    """
    if ep.is_moving is None:
        raise ValueError("build_samples needs is_moving: run filter_tracks first")
    xyz = np.asarray(ep.tracks_xyz, np.float64)
    known = np.asarray(ep.visible, bool) & finite_points(xyz)
    moving = np.flatnonzero(ep.is_moving)
    n_tracks, T = known.shape
    cluster = ep.cluster_id if ep.cluster_id is not None else np.full(n_tracks, -1)
    parts: list[tuple[int, tuple[np.ndarray, ...]]] = []
    for t in range(T):
        idx = moving[known[moving, t]]
        if idx.size == 0:
            continue
        res = frame_samples(t, idx, xyz, known, ep, cfg)
        if res is not None:
            parts.append((t, res))
    if not parts:
        return ep.replace(samples=empty_samples(cfg.future_len, cfg.history_len))

    def cat(i: int, dtype: type) -> np.ndarray:
        return np.concatenate([p[1][i] for p in parts]).astype(dtype)

    counts = np.array([len(p[1][0]) for p in parts], np.int64)
    track_index = cat(0, np.int32)
    samples = Samples(
        frames=np.array([p[0] for p in parts], np.int32),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        track_index=track_index,
        keypoints_uv=cat(1, np.float32),
        future=cat(2, np.float32),
        future_valid=cat(3, bool),
        history=cat(4, np.float32),
        history_valid=cat(5, bool),
        cluster_id=np.asarray(cluster)[track_index].astype(np.int32),
    )
    return ep.replace(samples=samples)
