"""Group moving tracks into rigid entities (`cluster_id`), the classical stand-in for DINO clusters.

μ0's rigidity regulariser (docs/method.md#model-objective) needs to know which keypoints belong to one body.
Two world-space tracks of one rigid body keep their distance; so the distance between tracks is the
median change of their separation over the frames both are visible, and average-linkage
hierarchical clustering (scipy) cut at `rigid_tol_m` groups them. Static tracks are entity 0 (the
world is one rigid body); moving entities are numbered 1..k by size; tracks seen together too
rarely to judge stay -1. Entities are rigid groups, not named bodies: on Meta-World episodes
(10-12 moving bodies, several of them robot links that move almost together) a 3 cm cut gives
11-15 groups, and 50-60% of moving tracks share a group with their own body's majority.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from tasks.config import FilterConfig, IngestConfig
from tasks.stage import Stage
from tasks.types import Episode

UNKNOWN = 2.0  # meters: the separation-change "distance" of a pair never seen together often enough


def separation_change(xyz: np.ndarray, visible: np.ndarray, min_common: int) -> np.ndarray:
    """(N, N) median |d_ij(t) - d_ij(t0)| over frames t both tracks are seen (t0: their first shared frame)."""
    seen = visible & np.isfinite(xyz).all(-1)  # (N, T)
    both = seen[:, None, :] & seen[None, :, :]  # (N, N, T)
    d = np.linalg.norm(xyz[:, None] - xyz[None, :], axis=-1)  # (N, N, T)
    ref = np.take_along_axis(d, np.argmax(both, axis=2)[..., None], axis=2)
    change = np.where(both, np.abs(d - ref), np.inf)
    change.sort(axis=2)  # the shared frames first, in order: the median is in the middle of them
    count = both.sum(2)
    lo = np.take_along_axis(change, np.maximum(count - 1, 0)[..., None] // 2, axis=2)[..., 0]
    hi = np.take_along_axis(change, (count // 2)[..., None], axis=2)[..., 0] if change.shape[2] else lo
    out = np.where(count >= min_common, 0.5 * (lo + np.where(count % 2, lo, hi)), UNKNOWN)
    np.fill_diagonal(out, 0.0)
    return out


MAX_FRAMES = 24  # rigidity shows on a few frames: compare on at most this many, evenly spaced


def cluster_moving(xyz: np.ndarray, visible: np.ndarray, tol_m: float, min_common: int) -> np.ndarray:
    """(N,) entity labels 1..k (largest first) for N moving tracks; -1 for tracks in no group."""
    n = len(xyz)
    if n == 0:
        return np.zeros(0, np.int32)
    if n == 1:
        return np.ones(1, np.int32)
    stride = -(-xyz.shape[1] // MAX_FRAMES)
    dist = separation_change(xyz[:, ::stride], visible[:, ::stride], max(2, -(-min_common // stride)))
    labels = fcluster(linkage(squareform(dist, checks=False), method="average"), t=tol_m, criterion="distance")
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    rank = {lab: k + 1 for k, lab in enumerate(order)}
    out = np.array([rank[lab] for lab in labels], np.int32)
    lonely = (dist >= UNKNOWN).sum(1) == n - 1  # compared with no one: no evidence for any group
    out[lonely] = -1
    return out


def group_entities(ep: Episode, cfg: FilterConfig) -> Episode:
    """Set `cluster_id`: 0 for static tracks, 1..k for rigidly co-moving groups of moving tracks."""
    if ep.is_moving is None or ep.tracks_xyz is None:
        return ep
    ids = np.zeros(len(ep.is_moving), np.int32)
    moving = np.flatnonzero(ep.is_moving)
    ids[moving] = cluster_moving(
        ep.tracks_xyz[moving], ep.visible[moving], cfg.rigid_group_tol_m, cfg.rigid_group_min_frames
    )
    return ep.replace(cluster_id=ids)


class Entities(Stage[FilterConfig | None]):
    """Rigid entity ids for moving tracks (the classical stand-in for DINO clusters, stage 2); with the `dino`
    keypoint backend the tracks keep their DINO entities (settings None)."""

    name = "entities"

    def settings(self, cfg: IngestConfig) -> FilterConfig | None:
        return None if cfg.keypoints.backend == "dino" else cfg.filter

    def run(self, ep: Episode, settings: FilterConfig | None) -> Episode:
        return ep if settings is None else group_entities(ep, settings)
