"""Stage 6: synchronous arc-length speed retargeting (docs/method.md#stage-6-arc-length-retargeting).

Demonstrations of the same motion differ in speed (operators, robots, frame rates). Resampling the
time axis at equal steps of *motion* makes the target describe where points go, not how fast. All
tracks of one anchor share one time warp (synchronous), so their relative timing (a hand reaching
an object before the object moves) is preserved.

The pieces (segment lengths, robust speed, clock, interpolation) take leading batch axes, so the
samples stage computes the clocks of all anchor frames of an episode in a few array calls instead
of one small `retarget` call per anchor, whose fixed cost was larger than its arithmetic.
"""

from __future__ import annotations

import numpy as np

from tasks.config import RetargetConfig


def robust_segment_speed(lengths: np.ndarray, ok: np.ndarray, top_frac: float) -> np.ndarray:
    """(..., S-1) per segment: mean of the top `top_frac` (at least one) of the valid lengths (..., N, S-1).

    The fastest few tracks define the motion (the hand or tool); the mean over all tracks would be
    diluted by the many slow points of a large object, and the max alone by one tracking glitch.
    A segment no track is valid across gets speed 0 (no evidence of motion: time passes unsampled).
    """
    n_valid = ok.sum(-2)
    n_tracks = lengths.shape[-2]
    if n_tracks == 0 or lengths.shape[-1] == 0:
        return np.zeros(lengths.shape[:-2] + lengths.shape[-1:])
    count = np.maximum(1, np.ceil(top_frac * n_valid).astype(np.int64))
    c_max = int(min(count.max(), n_tracks))
    filled = np.where(ok, lengths, -1.0)  # invalid sorts below every real length (>= 0)
    if c_max == 1:  # the common case (fewer than 1/top_frac valid tracks): the largest is the pick
        return np.where(n_valid > 0, filled.max(-2) / count, 0.0)
    top = -np.partition(-filled, c_max - 1, axis=-2)[..., :c_max, :]  # the c_max largest, unordered
    top = -np.sort(-top, axis=-2)  # descending
    csum = np.cumsum(top, axis=-2)
    pick = np.take_along_axis(csum, (np.minimum(count, c_max) - 1)[..., None, :], axis=-2)[..., 0, :]
    return np.where(n_valid > 0, pick / count, 0.0)


def arc_time(cum: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional time at each arc length `targets` (L,) on non-decreasing cumulative curves `cum` (..., S).

    Flat stretches (no motion) are skipped: a target maps to the earliest time the arc length is
    reached, so pauses collapse instead of producing repeated samples. Returns (tau, inside), each
    (..., L), where `inside` is False past the end of the trajectory (tau is then meaningless, set to 0).
    """
    end = cum[..., -1:]
    inside = targets <= end + 1e-9 * np.maximum(1.0, end)  # float cumsum must not drop the last sample
    S = cum.shape[-1]
    if S < 2:
        return np.zeros(inside.shape), inside
    tg = np.minimum(targets, end)
    j = (cum[..., None, :] < tg[..., :, None]).sum(-1)  # first vertex with cum >= target (searchsorted, per row)
    jc = np.clip(j, 1, S - 1)
    lo = np.take_along_axis(cum, jc - 1, axis=-1)
    hi = np.take_along_axis(cum, jc, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(hi > lo, (tg - lo) / (hi - lo), 0.0)
    tau = np.where(j == 0, 0.0, jc - 1 + frac)
    return np.where(inside, tau, 0.0), inside


def finite_points(x: np.ndarray) -> np.ndarray:
    """(..., S) True where all 3 coordinates of x (..., S, 3) are finite.

    Same as `np.isfinite(x).all(-1)`, which reduces over a length-3 axis about 10x slower.
    """
    return np.isfinite(x[..., 0]) & np.isfinite(x[..., 1]) & np.isfinite(x[..., 2])


def segment_lengths(clean: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., S-1) lengths between consecutive points of (..., S, 3) in (u/W, v/H, z m) units."""
    sq = np.diff(clean / np.array([width, height, 1.0]), axis=-2)
    sq *= sq
    return np.sqrt((sq[..., 0] + sq[..., 1]) + sq[..., 2])  # summed left to right like np.linalg.norm


def clock(speed: np.ndarray, step: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample times of `length` equal arc-length steps over per-segment speeds (A, S-1) -> (tau, inside).

    Both are (A, m): samples past m are outside every row's trajectory, so callers need not
    interpolate them (typically m is a few of `length`).
    """
    cum = np.concatenate([np.zeros(speed.shape[:-1] + (1,)), np.cumsum(speed, axis=-1)], axis=-1)
    targets = step * np.arange(length)
    longest = cum[..., -1].max(initial=0.0)
    m = int(np.count_nonzero(targets <= longest * (1 + 1e-9) + 1e-9))  # >= every row's `inside` count
    return arc_time(cum, targets[:m])


def lerp(
    c0: np.ndarray, c1: np.ndarray, ok0: np.ndarray, ok1: np.ndarray, frac: np.ndarray, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Points between frames floor(tau) (c0, ok0) and the next one (c1, ok1); (..., m, 3) and (..., m).

    Valid only when both frames are (just the first when tau is integer) and tau is inside.
    """
    vals = c0 + frac[..., None] * (c1 - c0)
    return vals, ok0 & (ok1 | (frac == 0)) & inside


def retarget(
    traj: np.ndarray, valid: np.ndarray, width: int, height: int, cfg: RetargetConfig, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample tracks (N, S, 3) of (u px, v px, z m) every `cfg.step` of robust arc length.

    Distances use (u/W, v/H, z m). Sample i sits at arc length i*step, i.e. at fractional time
    tau_i shared by all tracks; each track is interpolated linearly between frames floor/ceil(tau_i)
    and is valid there only when both frames are valid (just the one frame if tau_i is integer).
    Sample 0 is the anchor (tau = 0). Samples past the end of the trajectory are invalid.

    Zero motion (all robust speeds 0) leaves only sample 0 valid: a trace that does not move has no
    arc length to resample, and repeating the anchor `length` times would invent a confident
    "stays still for ever" target out of a timing we do not know. Downstream, `min_future_steps`
    then skips such anchors.

    Returns (out (N, length, 3) float64 in the input units with NaN where invalid, out_valid (N, length)).
    """
    traj = np.asarray(traj, dtype=np.float64)
    N, S = traj.shape[:2]
    valid = np.asarray(valid, bool) & finite_points(traj)
    out = np.full((N, length, 3), np.nan)
    out_valid = np.zeros((N, length), bool)
    if N == 0 or S == 0 or length == 0:
        return out, out_valid
    clean = np.where(valid[..., None], traj, 0.0)
    speed = robust_segment_speed(segment_lengths(clean, width, height), valid[:, 1:] & valid[:, :-1], cfg.top_frac)
    tau, inside = clock(speed, cfg.step, length)
    k0 = np.floor(tau).astype(np.int64)
    k1 = np.minimum(k0 + 1, S - 1)
    vals, ok = lerp(clean[:, k0], clean[:, k1], valid[:, k0], valid[:, k1], (tau - k0)[None], inside[None])
    m = tau.size
    out[:, :m][ok] = vals[ok]
    out_valid[:, :m] = ok
    return out, out_valid
