"""Build per-frame training samples: reproject, select keypoints, retarget (stages 4-6,
docs/method.md#stages-4-to-6-samples).

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

from tasks.config import IngestConfig, RetargetConfig
from tasks.geometry import inside_image
from tasks.extract.reproject import uvz_through_cameras
from tasks.extract.retarget import clock, finite_points, lerp, robust_segment_speed, segment_lengths
from tasks.stage import Stage
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


CHUNK_ELEMENTS = 1 << 21  # anchors per batch: about this many (anchor, track, frame) values at once


def anchor_samples(
    ts: np.ndarray, xyz: np.ndarray, known: np.ndarray, ep: Episode, cfg: RetargetConfig
) -> tuple[np.ndarray, ...]:
    """Samples of anchor frames `ts` (A,) over candidate tracks xyz (N, T, 3), known (N, T).

    Returns (anchor frame, track row, uv, future, future_valid, history, history_valid) for every
    kept (anchor, track) pair, anchor-major. A track is a keypoint of anchor t when known and
    on-screen at t. The future clock is computed over the anchor's keypoints before the
    min_future_steps drop: the drop only removes keypoints about to vanish, and recomputing would
    shift every other keypoint's time warp (and so its validity) again. The history clock uses the
    kept ones. Same results as `retarget` on each anchor's keypoints, computed for all anchors at
    once: each camera projects and measures segment lengths once, every anchor reads its window.
    """
    width, height = ep.image_size
    T = known.shape[1]
    cams, cam_of = np.unique(np.asarray(ep.w2c)[ts].reshape(len(ts), 16), axis=0, return_inverse=True)
    cam_of = cam_of.reshape(-1)
    uvz = uvz_through_cameras(xyz, ep.K, cams.reshape(-1, 4, 4))  # (C, N, T, 3)
    ok = known[None] & finite_points(uvz) & (uvz[..., 2] > 0)  # = uvz_valid(uvz)
    clean = np.where(ok[..., None], uvz, 0.0)
    seg = segment_lengths(clean, width, height)  # (C, N, T-1): segment j joins frames j and j+1
    seg_ok = ok[..., 1:] & ok[..., :-1]
    seg_of, seg_ok_of = (seg[cam_of], seg_ok[cam_of]) if len(cams) > 1 else (seg, seg_ok)
    n_tracks = known.shape[0]
    flat_clean, flat_ok = clean.reshape(-1, 3), ok.reshape(-1)
    at_t = uvz[cam_of, :, ts]  # (A, N, 3)
    onscreen = ok[cam_of, :, ts] & inside_image(at_t[..., :2], width, height)

    def along(direction: int, rows: np.ndarray, length: int) -> tuple[np.ndarray, ...]:
        """(pair, sample, value, valid) of every sample inside its pair's trajectory; pairs = nonzero(rows).

        Forward (+1) or backward (-1) from the anchors; the clock runs over each anchor's `rows`.
        """
        speed = robust_segment_speed(seg_of, seg_ok_of & rows[..., None], cfg.top_frac)  # (A, T-1) per segment
        steps = np.arange(min(T - 1, cfg.max_span_frames))
        j = ts[:, None] + (steps if direction > 0 else -1 - steps)  # the anchor's segments, up to max_span_frames
        window = (j >= 0) & (j < T - 1)
        tau, inside = clock(np.where(window, np.take_along_axis(speed, np.clip(j, 0, T - 2), -1), 0.0), cfg.step, length)
        k0 = np.floor(tau).astype(np.int64)
        pa, pn = np.nonzero(rows)
        p, i = np.nonzero(inside[pa])
        a = pa[p]
        f0 = ts[a] + direction * k0[a, i]
        base = (cam_of[a] * n_tracks + pn[p]) * T  # flat (camera, track) row
        at0, at1 = base + f0, base + np.clip(f0 + direction, 0, T - 1)
        vals, valid = lerp(flat_clean[at0], flat_clean[at1], flat_ok[at0], flat_ok[at1], tau[a, i] - k0[a, i], True)
        return p, i, vals, valid

    p, i, vals, valid = along(+1, onscreen, cfg.future_len)
    beyond = np.bincount(p[valid & (i >= 1)], minlength=int(onscreen.sum()))  # valid steps past the anchor
    has_future = beyond >= cfg.min_future_steps
    fut, fut_ok = dense(p, i, vals, valid, has_future, cfg.future_len)
    keep = np.zeros_like(onscreen)
    keep[onscreen] = has_future
    hist, hist_ok = dense(*along(-1, keep, cfg.history_len), np.ones(int(has_future.sum()), bool), cfg.history_len)
    a, n = np.nonzero(keep)
    return ts[a], n, at_t[a, n, :2], fut, fut_ok, hist, hist_ok


def dense(
    p: np.ndarray, i: np.ndarray, vals: np.ndarray, valid: np.ndarray, kept: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (pair p, sample i, value, valid) entries -> float32 (K, length, 3) with NaN where invalid
    and (K, length) valid, for the K pairs where `kept`."""
    row = np.cumsum(kept) - 1
    sel = kept[p]
    r, i, vals, valid = row[p[sel]], i[sel], vals[sel], valid[sel]
    out = np.full((int(kept.sum()), length, 3), np.nan, np.float32)
    out[r[valid], i[valid]] = vals[valid]
    out_valid = np.zeros(out.shape[:2], bool)
    out_valid[r, i] = valid
    return out, out_valid


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
    anchors = np.flatnonzero(known[moving].any(0))  # frames where some moving track is known
    xyz_m, known_m = xyz[moving], known[moving]
    span = cfg.max_span_frames
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, moving.size * min(T, 2 * span + 1)))
    parts = []
    for i in range(0, anchors.size, per_chunk):  # each batch of anchors sees the frames within `span` of it
        ts = anchors[i : i + per_chunk]
        lo, hi = max(0, int(ts[0]) - span), min(T, int(ts[-1]) + span + 1)
        part = anchor_samples(ts - lo, xyz_m[:, lo:hi], known_m[:, lo:hi], ep.replace(w2c=ep.w2c[lo:hi]), cfg)
        parts.append((part[0] + lo, *part[1:]))
    if not any(p[0].size for p in parts):
        return ep.replace(samples=empty_samples(cfg.future_len, cfg.history_len))

    def cat(i: int, dtype: type) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]).astype(dtype, copy=False)

    frames, counts = np.unique(cat(0, np.int32), return_counts=True)  # rows are anchor-major
    track_index = moving[cat(1, np.int64)].astype(np.int32)
    samples = Samples(
        frames=frames,
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        track_index=track_index,
        keypoints_uv=cat(2, np.float32),
        future=cat(3, np.float32),
        future_valid=cat(4, bool),
        history=cat(5, np.float32),
        history_valid=cat(6, bool),
        cluster_id=np.asarray(cluster)[track_index].astype(np.int32),
    )
    return ep.replace(samples=samples)


class BuildSamples(Stage[RetargetConfig]):
    """Stages 4-6 (docs/method.md#stages-4-to-6-samples): per-frame reprojected, retargeted training samples."""

    name = "samples"

    def settings(self, cfg: IngestConfig) -> RetargetConfig:
        return cfg.retarget

    def run(self, ep: Episode, settings: RetargetConfig) -> Episode:
        return build_samples(ep, settings)
