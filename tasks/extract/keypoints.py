"""Stage 2 (classical backend): query points from a uniform grid and good-features-to-track.

The grid gives coverage (METHOD.md stage 5 rejects episodes whose tracks cover < 60% of the
image); Shi-Tomasi corners give points LK can follow. Points on flat texture or unknown depth are
skipped because they cannot be tracked or lifted reliably.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from tasks.config import IngestConfig, KeypointConfig, LiftConfig
from tasks.extract.lift import clean_depth
from tasks.stage import Stage
from tasks.types import Episode


def texture_map(gray: np.ndarray, window_px: int) -> np.ndarray:
    """Min eigenvalue of the structure tensor per pixel (how well LK can localise there)."""
    return cv2.cornerMinEigenVal(gray, blockSize=max(3, window_px | 1), ksize=3)


CORNER_POOL = 4  # corners kept per frame, in multiples of `max_features`: the tracker takes the best uncovered ones


@dataclass(frozen=True)
class Candidates:
    """Query candidates of one frame, before coverage masking (stage 3 decides which are needed).

    `grid_uv` (n,2) are uniform grid points with known depth and `grid_flat` (n,) whether each sits on
    flat texture; `corners_uv` (m,2) are Shi-Tomasi corners with known depth, best first.
    """

    frame: int
    grid_uv: np.ndarray
    grid_flat: np.ndarray
    corners_uv: np.ndarray


def propose(gray: np.ndarray, depth_ok: np.ndarray, frame: int, cfg: KeypointConfig, window_px: int) -> Candidates:
    """Grid points and corners of one frame (H,W) where depth is known (`depth_ok`)."""
    H, W = gray.shape
    grid_uv, grid_flat = np.zeros((0, 2), np.float32), np.zeros(0, bool)
    if "grid" in cfg.backend:
        eig = texture_map(gray, window_px)
        s = cfg.grid_step_px
        vv, uu = np.mgrid[s // 2 : H - s // 2 : s, s // 2 : W - s // 2 : s]
        uu, vv = uu.ravel(), vv.ravel()
        keep = depth_ok[vv, uu]
        uu, vv = uu[keep], vv[keep]
        grid_uv, grid_flat = np.stack([uu, vv], -1).astype(np.float32), eig[vv, uu] < cfg.min_corner_eig
    corners = np.zeros((0, 2), np.float32)
    if "features" in cfg.backend and cfg.max_features > 0:
        mask = (depth_ok * 255).astype(np.uint8)
        c = cv2.goodFeaturesToTrack(
            gray, cfg.max_features * CORNER_POOL, cfg.feature_quality, cfg.feature_min_distance_px, mask=mask, blockSize=5
        )
        if c is not None:
            c = cv2.cornerSubPix(gray, c, (3, 3), (-1, -1), (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
            corners = c.reshape(-1, 2).astype(np.float32)
    return Candidates(frame, grid_uv, grid_flat, corners)


def select(c: Candidates, allowed: np.ndarray, cfg: KeypointConfig, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Query pixels (n,2) float32 among `c` inside `allowed` (H,W), and whether each is on flat texture (n,).

    Textured points come before flat ones, so de-duplication keeps them; flat grid points are kept for
    coverage (the tracker follows them only as static world points, their image motion being unobservable).
    """
    def inside(uv: np.ndarray) -> np.ndarray:
        return allowed[uv[:, 1].round().astype(int).clip(0, allowed.shape[0] - 1),
                       uv[:, 0].round().astype(int).clip(0, allowed.shape[1] - 1)] if len(uv) else np.zeros(0, bool)

    corners = c.corners_uv[inside(c.corners_uv)][: cfg.max_features]
    grid = inside(c.grid_uv)
    uv = np.concatenate([c.grid_uv[grid], corners]).astype(np.float32)
    is_flat = np.concatenate([c.grid_flat[grid], np.zeros(len(corners), bool)])
    if len(uv) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    order = np.argsort(is_flat, kind="stable")
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
    """Candidates on every re-seed frame (every `reseed_every` frames), plus the grey frames and clean depth."""
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in ep.frames])
    depth = clean_depth(ep, s.lift)
    cands = tuple(
        propose(gray[q], np.isfinite(depth[q]), q, s.keypoints, s.window_px)
        for q in range(0, ep.n_frames, s.keypoints.reseed_every)
    )
    return ep.replace(gray=gray, clean_depth=depth, keypoint_candidates=cands)


class Keypoints(Stage[KeypointSettings]):
    """Stage 2 (docs/method.md#stage-2-keypoint-proposal), classical backend: grid + Shi-Tomasi corners."""

    name = "keypoints"

    def settings(self, cfg: IngestConfig) -> KeypointSettings:
        return KeypointSettings(cfg.keypoints, cfg.lift, cfg.track.window_px)

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
