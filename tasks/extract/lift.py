"""Lift 2D tracks to world-frame 3D with per-frame depth and cameras (after removing depth edges).

Depth at an object's silhouette mixes foreground and background ("flying points"), so pixels
next to a large relative depth jump are treated as unknown before any sampling.
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.config import IngestConfig, LiftConfig
from tasks.extract.spill import empty_like_episode, frames_releasing
from tasks.geometry import sample_bilinear, unproject
from tasks.stage import Stage
from tasks.types import Episode


def filter_depth_edges(
    depth: np.ndarray, rel_jump: float, kernel_px: int, max_depth_m: float = np.inf, out: np.ndarray | None = None
) -> np.ndarray:
    """Copy of depth (T,H,W) with NaN beyond `max_depth_m` and on the far side of depth edges (into `out`, float32
    (T,H,W), if given: a spilled episode's file).

    A pixel is dropped when a neighbour is nearer by more than `rel_jump` of its depth. Only the far
    side goes, so thin foreground parts (fingers, handles) keep their depth while bilinear samples
    can no longer blend them with the background.
    """
    out = np.empty(depth.shape, np.float32) if out is None else out
    k = np.ones((kernel_px, kernel_px), np.uint8)
    with np.errstate(invalid="ignore", divide="ignore"):
        for t in frames_releasing(out.shape[0], depth, out):  # frame by frame: each frame's passes stay in cache
            d = out[t]
            d[:] = depth[t]
            d[~(d <= max_depth_m)] = np.nan
            lo = cv2.erode(np.where(np.isfinite(d), d, np.float32(np.inf)), k)
            lo -= d
            lo /= d  # = -(d - lo) / d, exactly
            d[lo < -rel_jump] = np.nan  # background next to a nearer surface: mixes when sampled
    return out


def lift_points(uv: np.ndarray, depth_t: np.ndarray, K: np.ndarray, w2c_t: np.ndarray) -> np.ndarray:
    """World points (N,3) of pixels (N,2) in one frame; NaN where depth is unknown."""
    z = sample_bilinear(depth_t, uv)
    return unproject(uv, z, K, w2c_t)


def lift_tracks(uv: np.ndarray, visible: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray,
                dtype=np.float64) -> np.ndarray:
    """World points (N, T, 3) of 2D tracks (N, T, 2) where `visible` (N, T); NaN elsewhere (never guessed)."""
    N, T = visible.shape
    xyz = np.full((N, T, 3), np.nan, dtype=dtype)
    for t in frames_releasing(T, depth):
        idx = np.flatnonzero(visible[:, t])
        if idx.size:
            xyz[idx, t] = lift_points(uv[idx, t], depth[t], K, w2c[t])
    return xyz


def clean_depth(ep: Episode, cfg: LiftConfig) -> np.ndarray:
    """The episode's edge-filtered depth, computed once."""
    if ep.clean_depth is not None:
        return ep.clean_depth
    out = empty_like_episode(ep.spill_dir, "clean-depth", ep.depth.shape, np.float32)
    return filter_depth_edges(ep.depth, cfg.edge_rel_jump, cfg.edge_kernel_px, cfg.max_depth_m, out)


def lift(ep: Episode, cfg: LiftConfig) -> Episode:
    """tracks_xyz (N,T,3) from tracks_uv where visible; NaN elsewhere (unknown, never guessed)."""
    xyz = lift_tracks(ep.tracks_uv, ep.visible, clean_depth(ep, cfg), ep.K, ep.w2c, np.float32)
    visible = ep.visible & np.isfinite(xyz).all(-1)
    return ep.replace(tracks_xyz=xyz, visible=visible, clean_depth=None)  # not needed past this stage


class Lift(Stage[LiftConfig]):
    """Stage 4 (docs/method.md#stage-4-lifting-and-reprojection): 2D tracks to world 3D through depth and cameras."""

    name = "lift"

    def settings(self, cfg: IngestConfig) -> LiftConfig:
        return cfg.lift

    def run(self, ep: Episode, settings: LiftConfig) -> Episode:
        return lift(ep, settings)
