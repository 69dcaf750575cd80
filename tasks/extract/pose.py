"""Stage 1b: camera poses. `given` poses are read by decode; `open3d` estimates them from RGB-D.

The estimate follows docs/method.md#stage-1-depth-and-camera-poses, with RGB-D registration in place of VGGT:
1. tracking sweep: every frame is registered directly to the keyframe before it (keyframes every
   `keyframe_every` frames; corners lifted with the keyframe's depth, LK + PnP, tasks/extract/odometry.py),
   the previous frame's result only guiding the search;
2. global sparse pass: each keyframe is also registered to a bounded set of earlier keyframes and
   all are solved jointly by open3d pose-graph optimisation: the anchors, in camera 0's frame;
3. dense chunks of `chunk_keyframes` keyframes: the chunk's keyframes are registered to its middle
   one, giving local poses for every chunk frame with at most two registrations, no chaining;
4. each chunk is fitted to its anchors (tasks/extract/anchoring.py): SE(3) with given depth, Sim(3) with
   predicted depth (the chunk's depth is rescaled by the fitted scale, so points and poses agree).
Cost is linear in length: a bounded number of registrations per frame and per keyframe.

World = camera of frame 0 (w2c[0] = identity); one intrinsics matrix for the whole episode. Any
`w2c` decode read is ignored: the ground truth must not leak into the estimate.

Scale honesty: `scale_spread` = (p90 - p10) / median of the per-chunk Sim(3) scales that could be
measured (anchor cameras spanning `min_scale_baseline_m`); NaN for SE(3) or fewer than two such
chunks. Above `max_scale_spread`, `metric_scale_ok` is False: the episode lands, flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.extract.anchoring import fit_chunk, solve_keyframes
from tasks.config import IngestConfig, PoseConfig
from tasks.errors import ConfigurationError, EpisodeInputError
from tasks.geometry import invert_rigid
from tasks.extract.odometry import KeyframePoints, Registration, dense_refine, keyframe_points, register, to_gray
from tasks.stage import Stage
from tasks.types import Episode, EpisodeSource


@dataclass(frozen=True)
class PoseEstimate:
    c2w: np.ndarray  # (T, 4, 4) camera -> world (world = camera 0)
    frame_scale: np.ndarray  # (T,) Sim(3) scale of each frame's chunk (1 where SE(3) or not measured)
    chunk_scales: np.ndarray  # (C,) measured per-chunk scales (empty for SE(3))
    n_lost: int  # frames no registration reached (they keep their keyframe's pose)

    @property
    def scale_spread(self) -> float:
        s = self.chunk_scales
        if len(s) < 2:
            return float("nan")
        p10, p50, p90 = np.percentile(s, [10, 50, 90])
        return float((p90 - p10) / p50)


def estimate_camera_poses(
    frames: np.ndarray, depth: np.ndarray, K: np.ndarray, cfg: PoseConfig, similarity: bool = False
) -> PoseEstimate:
    """Camera poses of RGB frames (T, H, W, 3) with depth (T, H, W) meters; see the module doc."""
    T = len(frames)
    gray = [to_gray(f) for f in frames]
    kf = np.arange(0, T, cfg.keyframe_every)
    points: dict[int, KeyframePoints] = {int(t): keyframe_points(frames[t], depth[t], K, cfg) for t in kf}

    def reg(ref: int, cur: int, init: np.ndarray) -> Registration:
        r = register(points[ref], gray[cur], K, cfg, init)
        if r.ok and cfg.dense_refine:
            T_ref_cur = dense_refine(frames[ref], depth[ref], frames[cur], depth[cur], K, r.T_ref_cur, cfg)
            r = Registration(T_ref_cur, r.n_inliers, r.information, True)
        return r

    # tracking sweep: every frame registered to the keyframe before it, guided by the previous frame
    prev_kf = np.maximum(np.searchsorted(kf, np.arange(T), side="left") - 1, 0)  # keyframe strictly before t
    rel = np.tile(np.eye(4), (T, 1, 1))  # T_{kf[prev_kf[t]] <- t}
    rel_ok = np.zeros(T, bool)
    rel_ok[0] = True
    guess = np.tile(np.eye(4), (len(kf), 1, 1))
    at_keyframe: dict[int, Registration] = {}
    for t in range(1, T):
        a = int(prev_kf[t])
        init = rel[t - 1] if t - 1 != kf[a] else np.eye(4)
        r = reg(int(kf[a]), t, init)
        rel[t], rel_ok[t] = (r.T_ref_cur, True) if r.ok else (init, False)  # a lost frame keeps the last pose
        if a + 1 < len(kf) and t == kf[a + 1]:
            guess[a + 1] = guess[a] @ rel[t]
            at_keyframe[a + 1] = r

    def reg_kf(i: int, j: int, init: np.ndarray) -> Registration:
        if i == j - 1:  # keyframe j was registered to its predecessor in the sweep
            return at_keyframe[j]
        return reg(int(kf[i]), int(kf[j]), init)

    kf_c2w, kf_ok = solve_keyframes(guess, reg_kf, cfg.keyframe_neighbours, cfg.keyframe_far_edges)
    c2w = np.tile(np.eye(4), (T, 1, 1))
    frame_scale = np.ones(T)
    scales = []
    ck = cfg.chunk_keyframes
    for g0 in range(0, len(kf), ck):
        group = [int(a) for a in range(g0, min(g0 + ck, len(kf)))]  # keyframe indices of this chunk
        ref = group[len(group) // 2]
        first = int(kf[group[0]])
        stop = int(kf[group[-1] + 1]) if group[-1] + 1 < len(kf) else T
        local_kf: dict[int, np.ndarray] = {ref: np.eye(4)}
        for a in group:
            if a != ref:
                r = reg(int(kf[ref]), int(kf[a]), invert_rigid(kf_c2w[ref]) @ kf_c2w[a])
                if r.ok:
                    local_kf[a] = r.T_ref_cur
        local = np.tile(np.eye(4), (stop - first, 1, 1))
        for t in range(first, stop):
            a = int(np.searchsorted(kf, t, side="right") - 1)  # keyframe at or before t
            base = local_kf.get(a, invert_rigid(kf_c2w[ref]) @ kf_c2w[a])  # untied keyframe: its global pose
            local[t - first] = base if t == kf[a] else base @ rel[t]
        anchors = [a for a in sorted(local_kf) if kf_ok[a]] or [ref]
        fit = fit_chunk(
            np.stack([local_kf[a] for a in anchors]),
            kf_c2w[anchors],
            similarity=similarity,
            outlier_sigma=cfg.anchor_outlier_sigma,
            min_residual_m=cfg.anchor_min_residual_m,
            min_baseline_m=cfg.min_scale_baseline_m,
        )
        c2w[first:stop] = fit.apply(local)
        if fit.scale_measured:
            scales.append(fit.scale)
            frame_scale[first:stop] = fit.scale
    c2w = invert_rigid(c2w[0]) @ c2w  # exact identity at frame 0
    return PoseEstimate(c2w, frame_scale, np.asarray(scales), int((~rel_ok).sum()))


def estimate_poses(ep: Episode, cfg: PoseConfig) -> Episode:
    if cfg.backend == "given":
        if ep.w2c is None:
            raise ConfigurationError(f"{ep.source.uri}/cameras.npz: pose backend 'given' needs cameras.npz with K and w2c (T,4,4)")
        return ep
    if ep.K is None:
        raise ConfigurationError(f"{ep.source.uri}: pose backend 'open3d' needs intrinsics K (cameras.npz or the depth stage)")
    if ep.depth is None or ep.frames is None:
        raise ConfigurationError(f"{ep.source.uri}: pose backend 'open3d' needs depth (given or predicted) and frames")
    similarity = ep.depth_source != "given"
    est = estimate_camera_poses(ep.frames, ep.depth, ep.K, cfg, similarity=similarity)
    if est.n_lost > cfg.max_lost_frac * ep.n_frames:
        raise EpisodeInputError(
            f"{ep.source.uri}: camera tracking lost on {est.n_lost} of {ep.n_frames} frames (too little texture or depth?)"
        )
    depth, clean = ep.depth, ep.clean_depth
    if similarity and (est.frame_scale != 1).any():
        depth, clean = (ep.depth * est.frame_scale[:, None, None]).astype(np.float32), None
    spread = est.scale_spread
    return ep.replace(
        w2c=invert_rigid(est.c2w),
        pose_source="open3d",
        depth=depth,
        clean_depth=clean,
        scale_spread=spread,
        metric_scale_ok=bool(ep.metric_scale_ok and not (spread > cfg.max_scale_spread)),
        meta={**ep.meta, "pose_lost_frames": est.n_lost},
    )


class Pose(Stage[PoseConfig]):
    """Stage 1b (docs/method.md#stage-1-depth-and-camera-poses): camera poses, given or estimated."""

    name = "pose"

    def settings(self, cfg: IngestConfig) -> PoseConfig:
        return cfg.pose

    def precheck(self, src: EpisodeSource, settings: PoseConfig) -> None:
        if src.kind == "video" and settings.backend == "given":
            raise ConfigurationError(
                f"{src.uri}: a plain video has no cameras, but the config asks for pose='given'; use --pose open3d, "
                "or give an episode directory with cameras.npz"
            )

    def run(self, ep: Episode, settings: PoseConfig) -> Episode:
        return estimate_poses(ep, settings)
