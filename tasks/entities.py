"""Group moving tracks into rigid entities (`cluster_id`), the classical stand-in for DINO clusters.

μ0's rigidity regulariser (METHOD.md section 2) needs to know which keypoints belong to one body.
Two world-space tracks of one rigid body keep their distance; so the distance between tracks is the
median change of their separation over the frames both are visible, and average-linkage
hierarchical clustering (scipy) cut at `rigid_tol_m` groups them. Static tracks are entity 0 (the
world is one rigid body); moving entities are numbered 1..k by size; tracks seen together too
rarely to judge stay -1. Entities are rigid groups, not named bodies: on Meta-World episodes
(10-12 moving bodies, several of them robot links that move almost together) a 3 cm cut gives
9-20 groups, each mostly one body (55-65% purity against the simulator's body ids).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from tasks.config import IngestConfig
from tasks.types import Episode

UNKNOWN = 2.0  # meters: the separation-change "distance" of a pair never seen together often enough


def separation_change(xyz: np.ndarray, visible: np.ndarray, min_common: int) -> np.ndarray:
    """(N, N) median |d_ij(t) - d_ij(t0)| over frames t both tracks are seen (t0: their first shared frame)."""
    n = len(xyz)
    seen = visible & np.isfinite(xyz).all(-1)
    out = np.full((n, n), UNKNOWN)
    np.fill_diagonal(out, 0.0)
    for i in range(n - 1):
        both = seen[i] & seen[i + 1 :]  # (n-i-1, T)
        d = np.linalg.norm(xyz[i + 1 :] - xyz[i], axis=-1)  # (n-i-1, T); NaN where unseen
        d = np.where(both, d, np.nan)
        count = both.sum(1)
        first = np.argmax(both, axis=1)
        ref = d[np.arange(len(d)), first]
        with warnings.catch_warnings():  # pairs never seen together: all-NaN rows, masked just below
            warnings.simplefilter("ignore", RuntimeWarning)
            change = np.nanmedian(np.abs(d - ref[:, None]), axis=1)
        ok = count >= min_common
        out[i, i + 1 :][ok] = change[ok]
        out[i + 1 :, i][ok] = change[ok]
    return out


def cluster_moving(xyz: np.ndarray, visible: np.ndarray, tol_m: float, min_common: int) -> np.ndarray:
    """(N,) entity labels 1..k (largest first) for N moving tracks; -1 for tracks in no group."""
    n = len(xyz)
    if n == 0:
        return np.zeros(0, np.int32)
    if n == 1:
        return np.ones(1, np.int32)
    dist = separation_change(xyz, visible, min_common)
    labels = fcluster(linkage(squareform(dist, checks=False), method="average"), t=tol_m, criterion="distance")
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    rank = {lab: k + 1 for k, lab in enumerate(order)}
    out = np.array([rank[lab] for lab in labels], np.int32)
    lonely = (dist >= UNKNOWN).sum(1) == n - 1  # compared with no one: no evidence for any group
    out[lonely] = -1
    return out


def group_entities(ep: Episode, cfg: IngestConfig) -> Episode:
    """Set `cluster_id`: 0 for static tracks, 1..k for rigidly co-moving groups of moving tracks."""
    if ep.is_moving is None or ep.tracks_xyz is None:
        return ep
    ids = np.zeros(len(ep.is_moving), np.int32)
    moving = np.flatnonzero(ep.is_moving)
    ids[moving] = cluster_moving(
        ep.tracks_xyz[moving], ep.visible[moving], cfg.filter.rigid_group_tol_m, cfg.filter.rigid_group_min_frames
    )
    return ep.replace(cluster_id=ids)
