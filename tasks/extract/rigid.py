"""Local rigid motion: carry points along with the tracked points around them.

A track lost on a smooth or briefly occluded surface still moves with its body; the motion of
its nearest visible neighbours (in 3D) predicts where it went far better than its own history.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

SAME_MOTION_M = 0.005  # world motion per frame within which two points move alike (a hidden table point is not
# dragged along by a passing gripper); also the speed above which a point counts as moving


def kabsch_batch(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted best rigid fits dst ≈ R @ src + t for batches (n,k,3) with weights (n,k): (R (n,3,3), t (n,3))."""
    wsum = w.sum(1, keepdims=True)
    wn = w / np.maximum(wsum, 1e-12)
    cs = (wn[..., None] * src).sum(1)
    cd = (wn[..., None] * dst).sum(1)
    Hm = np.einsum("nk,nki,nkj->nij", wn, src - cs[:, None], dst - cd[:, None])
    U, _, Vt = np.linalg.svd(Hm)
    d = np.sign(np.linalg.det(np.swapaxes(Vt, 1, 2) @ np.swapaxes(U, 1, 2)))
    D = np.zeros_like(Hm)
    D[:, 0, 0] = 1
    D[:, 1, 1] = 1
    D[:, 2, 2] = d
    R = np.swapaxes(Vt, 1, 2) @ D @ np.swapaxes(U, 1, 2)
    t = cd - np.einsum("nij,nj->ni", R, cs)
    return R, t


def carry(
    points: np.ndarray,
    anchors_before: np.ndarray,
    anchors_after: np.ndarray,
    point_vel: np.ndarray | None = None,
    anchor_vel: np.ndarray | None = None,
    vel_tol_m: float = SAME_MOTION_M,
    k: int = 12,
    radius_m: float = 0.05,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Move `points` (n,3) with the local motion of anchors (m,3)->(m,3) within `radius_m`.

    With velocities given, only anchors that were moving like the point (within `vel_tol_m` per
    frame) count: a table point hidden by a passing gripper must not be dragged along with it.
    Returns (moved points (n,3), number of anchors used (n,)). Three or more anchors give a rigid
    fit; one or two give their mean translation; none leaves the point where it was.
    `exclude_self` predicts each anchor from the others (a rigidity check on the anchors).
    """
    n = len(points)
    moved = points.copy()
    used = np.zeros(n, np.int64)
    if n == 0 or len(anchors_before) == 0:
        return moved, used
    k = min(k + exclude_self, len(anchors_before))
    dist, idx = cKDTree(anchors_before).query(points, k=k, distance_upper_bound=radius_m)
    dist, idx = dist.reshape(n, k), idx.reshape(n, k)
    if exclude_self:  # points are the anchors themselves: leave each one's own motion out
        dist, idx = dist[:, 1:], idx[:, 1:]
        k -= 1
    ok = np.isfinite(dist)
    idx = np.where(ok, idx, 0)
    if point_vel is not None and anchor_vel is not None:
        ok &= np.linalg.norm(anchor_vel[idx] - point_vel[:, None], axis=-1) < vel_tol_m
    used = ok.sum(1)
    src, dst = anchors_before[idx], anchors_after[idx]
    w = ok.astype(np.float64)
    few = (used > 0) & (used < 3)
    if few.any():
        shift = ((dst - src) * w[..., None]).sum(1) / np.maximum(used, 1)[:, None]
        moved[few] = points[few] + shift[few]
    many = used >= 3
    if many.any():
        R, t = kabsch_batch(src[many], dst[many], w[many])
        moved[many] = np.einsum("nij,nj->ni", R, points[many]) + t
    return moved, used
