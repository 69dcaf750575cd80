"""Stage 7a: cut an episode into motion chunks at the valleys of its keypoint acceleration.

METHOD.md stage 7: the per-frame mean acceleration magnitude of moving keypoints in (u, v, 0.1 z),
Savitzky-Golay smoothed (window 11, order 2); peaks of height >= min + 0.4 range and prominence
>= 0.4 range, at least `min_len` apart; cuts at the lowest point between adjacent peaks; chunks
of `min_len`..`max_len` frames, at most `max_chunks`. Frames flagged as ego-motion are left out of
the signal (they would otherwise dominate it).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d
from scipy.signal import find_peaks, savgol_filter


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
    if bad.all():
        return [(0, T - 1)]
    x[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), x[~bad])
    if T >= window:
        x = savgol_filter(x, window, order)
    lo, span = float(x.min()), float(x.max() - x.min())
    cuts: list[int] = []
    if span > 0:
        peaks, _ = find_peaks(x, height=lo + rel * span, prominence=rel * span, distance=max(1, min_len))
        cuts = [int(a + np.argmin(x[a:b])) for a, b in zip(peaks[:-1], peaks[1:])]
    bounds = _enforce(sorted(set(cuts)), T, min_len, max_len, max_chunks, x)
    edges = [0, *bounds, T]
    return [(a, b - 1) for a, b in zip(edges[:-1], edges[1:])]


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
