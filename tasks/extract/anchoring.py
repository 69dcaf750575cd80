"""Global alignment by anchoring (docs/method.md#stage-1-depth-and-camera-poses): keyframe pose graph, then
chunks fitted to its anchors.

Chaining frame-to-frame registrations drifts (9-16 cm ATE over a 40-degree orbit, measured); so
keyframes are solved jointly in one frame (open3d pose-graph optimisation over registrations to
several earlier keyframes) and each dense chunk is mapped onto the keyframes it contains by a
robust SE(3) or Sim(3) fit, never onto the previous chunk.

Poses here are camera-to-world (c2w) 4x4 matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tasks.geometry import invert_rigid
from tasks.extract.odometry import Registration


@dataclass(frozen=True)
class ChunkFit:
    """x_world = scale * R @ x_local + t, fitted on the anchors marked in `inliers`."""

    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)
    scale: float  # 1.0 for SE(3) or when the anchors span too little to measure it
    scale_measured: bool
    inliers: np.ndarray  # (n,) bool over the anchor pairs

    def apply(self, c2w: np.ndarray) -> np.ndarray:
        """Map local camera poses (..., 4, 4) into the world; the camera centre scales, the rotation does not."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[..., :3, :3] = self.R @ c2w[..., :3, :3]
        out[..., :3, 3] = self.scale * np.einsum("ij,...j->...i", self.R, c2w[..., :3, 3]) + self.t
        return out


def _fit(local: np.ndarray, anchor: np.ndarray, use: np.ndarray, similarity: bool, min_baseline_m: float) -> ChunkFit:
    R = Rotation.from_matrix(anchor[use, :3, :3] @ np.swapaxes(local[use, :3, :3], 1, 2)).mean().as_matrix()
    cl, cg = local[use, :3, 3], anchor[use, :3, 3]
    ml, mg = cl.mean(0), cg.mean(0)
    dl = (cl - ml) @ R.T
    scale, measured = 1.0, False
    if similarity and use.sum() >= 2 and np.sqrt((dl**2).sum(1).mean()) >= min_baseline_m:
        scale, measured = float((dl * (cg - mg)).sum() / (dl**2).sum()), True
    return ChunkFit(R, mg - scale * R @ ml, scale, measured, use)


def _residuals(fit: ChunkFit, local: np.ndarray, anchor: np.ndarray, lever_m: float) -> np.ndarray:
    """Per anchor pair: camera-centre error (m) plus rotation error (rad) times `lever_m`."""
    pred = fit.apply(local)
    ang = Rotation.from_matrix(pred[:, :3, :3] @ np.swapaxes(anchor[:, :3, :3], 1, 2)).magnitude()
    return np.linalg.norm(pred[:, :3, 3] - anchor[:, :3, 3], axis=1) + lever_m * ang


def fit_chunk(
    local: np.ndarray,
    anchor: np.ndarray,
    similarity: bool = False,
    outlier_sigma: float = 2.0,
    min_residual_m: float = 0.005,
    min_baseline_m: float = 0.02,
    lever_m: float = 1.0,
) -> ChunkFit:
    """Robust fit of a chunk's local poses of the anchor frames (n, 4, 4) to their global poses (n, 4, 4).

    Rotation: quaternion (chordal L2, Markley) average of the per-pair rotations. Translation: the
    mean of the pairs. Scale (Sim(3) only): least squares on the anchor camera centres, measured only
    when they span `min_baseline_m`. With 4 or more anchors, pairs whose residual (centre error plus
    rotation error times `lever_m`) exceeds `outlier_sigma` sigma are dropped and the fit redone;
    sigma is 1.4826 x the median residual (robust to the outliers themselves) and residuals under
    `min_residual_m` are always kept. With 3, an anchor is dropped when the fit on the other two
    places it more than `min_residual_m` and `outlier_sigma` times their own residuals off (a chunk's
    registration to its reference that went wrong: 1.8 cm on a held-out orbit episode, measured).
    """
    n = len(local)
    if n == 0:
        raise ValueError("fit_chunk needs at least one anchor pair")

    def fit_on(use: np.ndarray) -> ChunkFit:
        return _fit(local, anchor, use, similarity, min_baseline_m)

    fit = fit_on(np.ones(n, bool))
    if n == 3:  # too few for a spread: drop the anchor the other two place farthest off, beyond their own disagreement
        worst = 0.0
        for odd in range(3):
            pair = np.arange(3) != odd
            on_pair = fit_on(pair)
            res = _residuals(on_pair, local, anchor, lever_m)
            if res[odd] > max(min_residual_m, outlier_sigma * res[pair].max(), worst):
                worst, fit = res[odd], on_pair
    if n >= 4:
        for _ in range(3):
            res = _residuals(fit, local, anchor, lever_m)
            sigma = 1.4826 * np.median(res)
            new = res <= max(outlier_sigma * sigma, min_residual_m)
            if new.sum() < 2 or (new == fit.inliers).all():
                break
            fit = fit_on(new)
    return fit


def keyframe_partners(j: int, neighbours: int, far_edges: int) -> list[int]:
    """Earlier keyframes that keyframe `j` is registered to: the `neighbours` previous ones, then
    `far_edges` more at 2x growing distance (a bounded number: cost stays linear in length)."""
    near = [j - d for d in range(1, neighbours + 1) if j - d >= 0]
    far, d = [], 2 * neighbours
    while len(far) < far_edges and j - d >= 0:
        far.append(j - d)
        d *= 2
    if far_edges and j - d < 0 and 0 not in near + far and j > 0:
        far.append(0)  # the first keyframe fixes the world: tie to it while it may still be in view
    return near + far


def solve_keyframes(
    guess_c2w: np.ndarray,
    register: Callable[[int, int, np.ndarray], Registration],
    neighbours: int,
    far_edges: int,
) -> tuple[np.ndarray, np.ndarray]:
    """c2w (n, 4, 4) of n keyframes in keyframe 0's camera frame, and a (n,) bool "registered" mask.

    `register(i, j, init_T_i_j)` registers keyframe j to earlier keyframe i starting from a guess
    taken from `guess_c2w` (n, 4, 4) (the tracking sweep). Initial poses take each keyframe's best
    registration; open3d's pose-graph optimisation then reconciles all of them, pruning
    inconsistent loop edges. A keyframe no registration reaches keeps its guess (and is no anchor).
    """
    import open3d as o3d

    reg = o3d.pipelines.registration
    n = len(guess_c2w)
    c2w = guess_c2w.copy()
    ok = np.zeros(n, bool)
    ok[0] = True
    graph = reg.PoseGraph()
    graph.nodes.append(reg.PoseGraphNode(np.eye(4)))
    for j in range(1, n):
        best: Registration | None = None
        guess = c2w[j]
        for i in keyframe_partners(j, neighbours, far_edges):
            r = register(i, j, invert_rigid(c2w[i]) @ guess)
            if not r.ok:
                continue
            graph.edges.append(reg.PoseGraphEdge(j, i, r.T_ref_cur, r.information, uncertain=(j - i) > 1))
            if ok[i] and (best is None or r.n_inliers > best.n_inliers):
                best, c2w[j] = r, c2w[i] @ r.T_ref_cur
        ok[j] = best is not None
        graph.nodes.append(reg.PoseGraphNode(c2w[j].copy()))
    if len(graph.edges):
        option = reg.GlobalOptimizationOption(
            max_correspondence_distance=0.02, edge_prune_threshold=0.25, preference_loop_closure=1.0, reference_node=0
        )
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            reg.global_optimization(
                graph, reg.GlobalOptimizationLevenbergMarquardt(), reg.GlobalOptimizationConvergenceCriteria(), option
            )
        c2w = np.stack([np.asarray(node.pose) for node in graph.nodes])
        c2w = invert_rigid(c2w[0]) @ c2w  # keyframe 0 is the world
    return c2w, ok
