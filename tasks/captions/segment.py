"""Stage 7a: cut an episode into motion chunks at the valleys of its keypoint acceleration.

As in docs/method.md#stage-7-segmentation-and-captions: the per-frame mean acceleration magnitude of
moving keypoints in (u, v, 0.1 z), Savitzky-Golay smoothed (window 11, order 2); peaks of height
>= min + 0.4 range and prominence >= 0.4 range, at least `min_len` apart; cuts at the lowest point
between adjacent peaks; chunks of `min_len`..`max_len` frames, at most `max_chunks`. Frames flagged
as ego-motion are left out of the signal (they would otherwise dominate it).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d
from scipy.signal import find_peaks, savgol_filter

from tasks.config import CaptionConfig
from tasks.types import Episode


def acceleration_signal(uvz: np.ndarray, visible: np.ndarray, z_weight: float = 0.1, margin: int = 5) -> np.ndarray:
    """(T,) mean |second difference| over tracks (N,T,3) seen throughout t-margin..t+margin; NaN where none."""
    N, T, _ = uvz.shape
    p = uvz * np.array([1.0, 1.0, z_weight])
    acc = np.full((N, T), np.nan)
    acc[:, 1:-1] = np.linalg.norm(p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2], axis=-1)
    k = 2 * margin + 1
    run = convolve1d(visible.astype(float), np.ones(k), axis=1, mode="constant")  # frames seen in the window
    ok = (run >= k - 1e-9) & np.isfinite(acc)
    with np.errstate(invalid="ignore"):
        return np.where(ok.any(0), np.nansum(np.where(ok, acc, 0.0), 0) / np.maximum(ok.sum(0), 1), np.nan)


def segment(
    signal: np.ndarray,
    min_len: int = 25,
    max_len: int = 200,
    max_chunks: int = 6,
    window: int = 11,
    order: int = 2,
    rel: float = 0.4,
    exclude: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """Chunks [(start, end_inclusive)] covering frames 0..T-1, cut at valleys between motion peaks."""
    T = len(signal)
    if T == 0:
        return []
    x = np.asarray(signal, float).copy()
    bad = ~np.isfinite(x) if exclude is None else (~np.isfinite(x) | exclude)
    if bad.all():  # no usable motion anywhere: only the length limits cut
        x[:] = 0.0
        bad[:] = False
    x[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), x[~bad])
    if T >= window:
        x = savgol_filter(x, window, order)
    lo, span = float(x.min()), float(x.max() - x.min())
    cuts: list[int] = []
    if span > 0:
        peaks, _ = find_peaks(x, height=lo + rel * span, prominence=rel * span, distance=max(1, min_len))
        cuts = [_valley(x, a, b, 0.1 * span) for a, b in zip(peaks[:-1], peaks[1:])]
    bounds = _enforce(sorted(set(cuts)), T, min_len, max_len, max_chunks, x)
    edges = [0, *bounds, T]
    return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:])]


def _valley(x: np.ndarray, a: int, b: int, tol: float) -> int:
    """The lowest frame between peaks a and b; on a flat floor (within `tol`), its middle frame
    (why: a still pause between two motions is best cut in its centre, not at its first frame)."""
    low = np.flatnonzero(x[a:b] <= x[a:b].min() + tol)
    return int(a + low[len(low) // 2])


def _enforce(cuts: list[int], T: int, min_len: int, max_len: int, max_chunks: int, x: np.ndarray) -> list[int]:
    """Drop the weakest cuts until chunks are >= min_len and <= max_chunks; then split chunks longer
    than max_len at their quietest frame while the chunk budget allows."""

    def lengths(c: list[int]) -> list[int]:
        e = [0, *c, T]
        return [b - a for a, b in zip(e[:-1], e[1:])]

    cuts = list(cuts)
    while cuts and (min(lengths(cuts)) < min_len or len(cuts) + 1 > max_chunks):
        ls = lengths(cuts)
        cuts.pop(int(np.argmin([ls[j] + ls[j + 1] for j in range(len(cuts))])))
    for a, b in zip([0, *cuts], [*cuts, T]):
        n = min(int(np.ceil((b - a) / max_len)), max_chunks - len(cuts))  # parts this chunk becomes
        for k in range(1, n):  # cut near each equal split, at its quietest frame
            centre, half = a + (b - a) * k // n, max(1, (b - a) // (4 * n))
            lo, hi = max(a + 1, centre - half), min(b - 1, centre + half)
            if hi > lo:  # ties (flat signal) go to the frame nearest the equal split
                tie = 1e-9 * (np.ptp(x) + 1.0) * np.abs(np.arange(lo, hi) - centre)
                cuts.append(lo + int(np.argmin(x[lo:hi] + tie)))
            else:
                cuts.append(centre)
    return sorted(cuts)


def fixed_camera_uvz(xyz: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """World tracks (N,T,3) seen through one fixed camera: (u px, v px, z m) (N,T,3).

    Why: with a moving camera, image-space motion is mostly ego-motion; through a fixed camera only
    the scene's own motion is left, in the same units as the static-camera signal.
    """
    cam = xyz @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        uv = (cam[..., :2] / z[..., None]) * np.diag(K)[:2] + K[:2, 2]
    return np.concatenate([uv, z[..., None]], -1)


def ego_motion_frames(
    tracks_uv: np.ndarray, visible: np.ndarray, min_keypoints: int, px_per_frame: float, margin: int = 5
) -> np.ndarray:
    """(T,) bool: frames where at least `min_keypoints` tracks move (that many moving keypoints means the
    camera moved, docs/method.md#stage-7-segmentation-and-captions). A track moves at t when its mean
    image speed over t-margin..t+margin exceeds `px_per_frame` (a window, so a shaking camera's turning
    points count too)."""
    T = tracks_uv.shape[1]
    step = np.zeros(visible.shape)
    seen = visible[:, 1:] & visible[:, :-1]
    step[:, 1:] = np.where(seen, np.linalg.norm(np.diff(tracks_uv, axis=1), axis=-1), 0.0)
    k = 2 * margin + 1
    speed = convolve1d(step, np.ones(k) / k, axis=1, mode="nearest")
    count = (speed > px_per_frame).sum(0)
    return count[:T] >= min_keypoints


def episode_motion(ep: Episode, cfg: CaptionConfig) -> tuple[np.ndarray, np.ndarray]:
    """The acceleration signal (T,) of the episode's moving keypoints and the ego-motion frames (T,) to leave out.

    With cameras and world tracks the signal is measured through the middle frame's camera, held
    fixed, so camera motion cannot enter it (nothing is excluded); without them it is image-space
    and frames where too many keypoints move at once are excluded as ego-motion.
    """
    T = ep.n_frames
    moving = np.zeros(ep.n_tracks, bool) if ep.is_moving is None else np.asarray(ep.is_moving, bool)
    if T == 0 or not moving.any() or ep.visible is None:
        return np.full(T, np.nan), np.zeros(T, bool)
    visible = ep.visible[moving]
    if ep.tracks_xyz is not None and ep.w2c is not None and ep.K is not None:
        uvz = fixed_camera_uvz(ep.tracks_xyz[moving].astype(np.float64), ep.K, ep.w2c[T // 2])
        visible = visible & np.isfinite(uvz).all(-1)
        exclude = np.zeros(T, bool)
    else:
        uv = ep.tracks_uv[moving].astype(np.float64)
        uvz = np.concatenate([uv, np.zeros(uv.shape[:2] + (1,))], -1)
        exclude = ego_motion_frames(ep.tracks_uv, ep.visible, cfg.ego_min_keypoints, cfg.ego_px_per_frame, cfg.visibility_margin)
    signal = acceleration_signal(uvz, visible, cfg.z_weight, cfg.visibility_margin)
    return signal, exclude


def segment_episode(ep: Episode, cfg: CaptionConfig) -> list[tuple[int, int]]:
    """Motion chunks [(start, end_inclusive)] covering the episode's stored frames 0..T-1."""
    signal, exclude = episode_motion(ep, cfg)
    return segment(
        signal,
        min_len=cfg.min_chunk_len,
        max_len=cfg.max_chunk_len,
        max_chunks=cfg.max_chunks,
        window=cfg.smooth_window,
        order=cfg.smooth_order,
        rel=cfg.peak_rel,
        exclude=exclude,
    )
