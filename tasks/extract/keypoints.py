"""Stage 2 (classical backend): query points from a uniform grid and good-features-to-track.

The grid gives coverage (stage 5, docs/method.md#stage-5-motion-filter-and-coverage, rejects episodes
whose tracks cover < 60% of the image); Shi-Tomasi corners give points LK can follow. Points on flat
texture or unknown depth are skipped because they cannot be tracked or lifted reliably.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from tasks.config import IngestConfig, KeypointConfig, LiftConfig
from tasks.extract.lift import clean_depth
from tasks.extract.spill import empty_like_episode, frames_releasing
from tasks.stage import Resources, Stage
from tasks.types import Episode


def texture_map(gray: np.ndarray, window_px: int) -> np.ndarray:
    """Min eigenvalue of the structure tensor per pixel (how well LK can localise there)."""
    return cv2.cornerMinEigenVal(gray, blockSize=max(3, window_px | 1), ksize=3)


def propose(
    gray: np.ndarray,
    cfg: KeypointConfig,
    window_px: int,
    allowed: np.ndarray | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Query pixels (n, 2) float32 in one frame and whether each sits on flat texture (n,) bool.

    `allowed` (H,W) masks where points may go. Flat grid points are kept for coverage: the
    tracker follows them only as static world points (their image motion is unobservable).
    """
    H, W = gray.shape
    allowed = np.ones((H, W), bool) if allowed is None else allowed
    eig = texture_map(gray, window_px)
    min_eig = cfg.min_corner_eig
    pts, flat = [], []
    if "grid" in cfg.backend:
        s = cfg.grid_step_px
        vv, uu = np.mgrid[s // 2 : H - s // 2 : s, s // 2 : W - s // 2 : s]
        uu, vv = uu.ravel(), vv.ravel()
        keep = allowed[vv, uu]
        uu, vv = uu[keep], vv[keep]
        pts.append(np.stack([uu, vv], -1).astype(np.float32))
        flat.append(eig[vv, uu] < min_eig)
    if "features" in cfg.backend and cfg.max_features > 0:
        mask = (allowed * 255).astype(np.uint8)
        c = cv2.goodFeaturesToTrack(
            gray, cfg.max_features, cfg.feature_quality, cfg.feature_min_distance_px, mask=mask, blockSize=5
        )
        if c is not None:
            c = cv2.cornerSubPix(gray, c, (3, 3), (-1, -1), (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
            pts.append(c.reshape(-1, 2).astype(np.float32))
            flat.append(np.zeros(len(pts[-1]), bool))
    if not pts:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    uv, is_flat = np.concatenate(pts), np.concatenate(flat)
    order = np.argsort(is_flat, kind="stable")  # corners first, so de-duplication keeps them
    uv, is_flat = uv[order], is_flat[order]
    keep = _dedupe(uv, cfg.feature_min_distance_px / 2)
    uv, is_flat = uv[keep], is_flat[keep]
    if limit is not None and len(uv) > limit:
        pick = np.sort(np.random.default_rng(0).choice(len(uv), limit, replace=False))
        uv, is_flat = uv[pick], is_flat[pick]
    return uv, is_flat


class KeypointSettings(NamedTuple):
    keypoints: KeypointConfig
    lift: LiftConfig  # the edge-cleaned depth decides where points can be lifted
    window_px: int  # the tracker's LK window: texture is measured at the scale LK sees


def propose_keypoints(ep: Episode, s: KeypointSettings) -> Episode:
    """The first frame's query points (the tracker re-seeds later frames with `propose` where coverage is missing).

    Also makes the grey frames and the edge-cleaned depth once, for the tracker to share.
    """
    gray = empty_like_episode(ep.spill_dir, "gray", ep.frames.shape[:3], np.uint8)
    for t in frames_releasing(ep.n_frames, ep.frames, gray):
        gray[t] = cv2.cvtColor(ep.frames[t], cv2.COLOR_RGB2GRAY)
    depth = clean_depth(ep, s.lift)
    if s.keypoints.backend == "dino":
        return dino_seeds(ep.replace(gray=gray, clean_depth=depth), s.keypoints)
    uv, flat = propose(gray[0], s.keypoints, s.window_px, np.isfinite(depth[0]), limit=s.keypoints.max_points)
    return ep.replace(gray=gray, clean_depth=depth, seed_uv=uv, seed_flat=flat)


def dino_seeds(ep: Episode, cfg: KeypointConfig) -> Episode:
    """DINOv2-entity seeds over the whole episode, each with its query frame and entity; those on unknown depth
    are dropped (they cannot be lifted)."""
    from tasks.extract.dino_entities import select_dino_keypoints

    sel = select_dino_keypoints(ep.frames, cfg.dino)
    q = sel.query_frame.astype(np.int32)
    H, W = ep.clean_depth.shape[1:]
    col = np.clip(np.rint(sel.uv[:, 0]), 0, W - 1).astype(int)
    row = np.clip(np.rint(sel.uv[:, 1]), 0, H - 1).astype(int)
    ok = np.isfinite(ep.clean_depth[q, row, col])
    n = int(ok.sum())
    return ep.replace(
        seed_uv=sel.uv[ok], seed_flat=np.zeros(n, bool), seed_frame=q[ok], seed_entity=sel.entity[ok].astype(np.int32)
    )


class Keypoints(Stage[KeypointSettings]):
    """Stage 2 (docs/method.md#stage-2-keypoint-proposal): grid + Shi-Tomasi corners, or DINOv2 entities (`dino`)."""

    name = "keypoints"

    def settings(self, cfg: IngestConfig) -> KeypointSettings:
        return KeypointSettings(cfg.keypoints, cfg.lift, cfg.track.window_px)

    def warm(self, settings: KeypointSettings) -> None:
        """Load DINOv2 once per worker (the `dino` backend), not once per episode."""
        if settings.keypoints.backend == "dino":
            from models.dino_patches import load_dinov2

            load_dinov2(settings.keypoints.dino.model, settings.keypoints.dino.device)

    @classmethod
    def gpu_setting(cls) -> str:
        return "keypoints.dino.gpus"

    def resources(self, settings: KeypointSettings) -> Resources:
        return Resources(gpus=settings.keypoints.dino.gpus if settings.keypoints.backend == "dino" else 0.0)

    def uses_model(self, settings: KeypointSettings) -> bool:
        return settings.keypoints.backend == "dino"

    def run(self, ep: Episode, settings: KeypointSettings) -> Episode:
        return propose_keypoints(ep, settings)


def _dedupe(uv: np.ndarray, min_dist: float) -> np.ndarray:
    """Indices of points kept after dropping those in the cell of an earlier one (grid and corners overlap)."""
    if len(uv) < 2:
        return np.arange(len(uv))
    key = np.floor(uv / max(min_dist, 1e-6)).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return np.sort(first)


def uncovered_mask(uv: np.ndarray, width: int, height: int, grid: int) -> np.ndarray:
    """(H, W) bool: True in grid cells that hold none of the points `uv` (n,2)."""
    cells = np.zeros((grid, grid), bool)
    if len(uv):
        cx = np.clip((uv[:, 0] + 0.5) * grid / width, 0, grid - 1).astype(int)
        cy = np.clip((uv[:, 1] + 0.5) * grid / height, 0, grid - 1).astype(int)
        cells[cy, cx] = True
    ys = np.minimum(np.arange(height) * grid // height, grid - 1)
    xs = np.minimum(np.arange(width) * grid // width, grid - 1)
    return ~cells[ys[:, None], xs[None, :]]
