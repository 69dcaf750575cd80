"""Stage 5: motion filter and track-coverage quality check (docs/method.md#stage-5-motion-filter-and-coverage).

Training samples keep only keypoints that move in the world: static background points would teach
the model that "nothing moves" is the answer for most of the image. Coverage catches episodes
whose tracking collapsed (typically heavy camera rotation) before they pollute the dataset.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from tasks.config import FilterConfig, IngestConfig, TrackConfig
from tasks.extract.keypoints import texture_map
from tasks.extract.lift import lift_points
from tasks.extract.lk import lk_forward_backward
from tasks.extract.spill import blocks, frames_releasing
from tasks.geometry import inside_image, project
from tasks.stage import Stage
from tasks.types import Episode


def first_visible(valid: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (N, window) of each track's first `window` valid frames, and their mask (N, window).

    Tracks with fewer valid frames are padded (mask False) with arbitrary frame indices.
    """
    N, T = valid.shape
    window = min(window, T)
    order = np.argsort(~valid, axis=1, kind="stable")[:, :window]  # valid frames first, in time order
    return order, np.take_along_axis(valid, order, axis=1)


def max_pairwise_distance(pts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N,) largest distance between two masked points of each row of pts (N, W, D); 0 if < 2 points.

    A loop over W keeps memory at N*W (pdist per track would be a Python loop over tracks). Each
    step compares point i with the later points only (distances are symmetric), on (W, N)
    coordinate planes so every operation runs over contiguous rows; the squared distance is summed
    left to right like `np.linalg.norm`, and the square root is taken once, of the maximum
    (sqrt is monotonic), so the result equals the norm of the farthest pair.
    """
    N, W = mask.shape
    best = np.zeros(N)
    planes = [np.ascontiguousarray(np.moveaxis(pts[..., c], 0, 1), dtype=np.float64) for c in range(pts.shape[-1])]
    m = np.ascontiguousarray(mask.T)
    for i in range(W - 1):
        sq = None
        for p in planes:
            d = p[i + 1 :] - p[i]
            d *= d
            if sq is None:
                sq = d
            else:
                sq += d
        if sq is None:
            break
        sq[~(m[i + 1 :] & m[i])] = 0.0
        np.maximum(best, sq.max(0), out=best)
    return np.sqrt(best)


def is_moving(
    xyz: np.ndarray, visible: np.ndarray, K: np.ndarray, w2c: np.ndarray, width: int, height: int, cfg: FilterConfig
) -> np.ndarray:
    """(N,) True where the track's extent in (u, v, z_weight*z) through camera 0 exceeds motion_frac of the diagonal.

    One fixed camera (the first frame's) removes ego-motion: a static point stays put however the
    camera moves. The maximum pairwise displacement (trajectory diameter) counts a point that moves
    away and comes back, unlike start-to-end distance. Only the first `motion_window` visible frames
    count, as in the published pipeline (bounded cost; long-term drift of static points is ignored).
    Frames where the point is behind camera 0 have no pixel and are left out.
    """
    N, T = visible.shape
    if N == 0:
        return np.zeros(0, bool)
    cam0 = np.asarray(w2c)[0]
    ok = np.zeros((N, T), bool)
    for lo, hi in blocks(T, TRACK_BLOCK):  # a block of frames at a time: nothing of size (N, T, 3) float64 is made
        uvz = project(np.asarray(xyz[:, lo:hi], np.float64), K, cam0)
        ok[:, lo:hi] = visible[:, lo:hi] & np.isfinite(uvz).all(-1) & (uvz[..., 2] > 0)
    order, mask = first_visible(ok, cfg.motion_window)
    pts = project(np.take_along_axis(np.asarray(xyz), order[..., None], axis=1).astype(np.float64), K, cam0)
    pts = np.where(mask[..., None], pts, 0.0) * np.array([1.0, 1.0, cfg.z_weight])
    threshold = cfg.motion_frac * float(np.hypot(width, height))
    return max_pairwise_distance(pts, mask) > threshold


def track_coverage(tracks_uv: np.ndarray, visible: np.ndarray, width: int, height: int, grid: int = 16) -> float:
    """Mean over frames of the fraction of grid x grid image cells holding at least one visible track point.

    Cells tile the image extent [-0.5, W-0.5] x [-0.5, H-0.5] (pixel centres at integers,
    docs/architecture.md#conventions).
    Every frame counts, so frames where tracking is lost pull the mean down. 0.0 for no frames.
    """
    if visible.shape[1] == 0:
        return 0.0
    return float(occupied_cells(tracks_uv, visible, width, height, grid).mean(1).mean())


def occupied_cells(tracks_uv: np.ndarray, visible: np.ndarray, width: int, height: int, grid: int) -> np.ndarray:
    """(T, grid * grid) bool: the cells (row-major) holding a visible track point in each frame."""
    T = visible.shape[1]
    occupied = np.zeros((T, grid * grid), bool)
    for lo, hi in blocks(T, TRACK_BLOCK):  # a block of frames at a time: the index arrays stay small on long videos
        uv = np.asarray(tracks_uv[:, lo:hi], np.float64)
        ok = np.asarray(visible[:, lo:hi], bool) & np.isfinite(uv).all(-1) & inside_image(uv, width, height)
        n_idx, t_idx = np.nonzero(ok)
        cx = np.clip(np.floor((uv[n_idx, t_idx, 0] + 0.5) / width * grid), 0, grid - 1).astype(np.int64)
        cy = np.clip(np.floor((uv[n_idx, t_idx, 1] + 0.5) / height * grid), 0, grid - 1).astype(np.int64)
        occupied[lo + t_idx, cy * grid + cx] = True
    return occupied


TRACK_BLOCK = 512  # frames per pass over the (N, T) track arrays
MIN_FOLLOWED = 0.25  # share of probe points plain LK must follow for their 3D jumps to say anything about depth


class TextureSettings(NamedTuple):
    """What stage 2 needs to place a point, so a rejection can say why cells stayed empty."""

    min_corner_eig: float = 5e-5  # keypoints.min_corner_eig: grid points below it are flat
    max_depth_m: float = 20.0  # lift.max_depth_m: farther depth is unknown
    track: TrackConfig = TrackConfig()  # the tracker's LK (texture is measured at its window) and its 3D jump limit


class EmptyCells(NamedTuple):
    """Shares of all (frame, cell) pairs that hold no visible track, by what the cell shows."""

    no_depth: float  # most of the cell has unknown depth (sky, far plane, depth edges): nothing to lift
    flat: float  # depth known but > 90% of the cell below the texture threshold: too flat to place a point
    lost: float  # textured, with depth, yet empty: tracks were lost (fast motion, rotation, occlusion)
    lk_jump_m: float = float("nan")  # median 3D jump of the steps plain LK follows (`lk_step_jump_m`); NaN: not measured


def empty_cells(
    tracks_uv: np.ndarray, visible: np.ndarray, frames: np.ndarray, depth: np.ndarray, grid: int, tex: TextureSettings
) -> EmptyCells:
    """Why the cells without a visible track are empty, from the frames (T,H,W,3) and depth (T,H,W) themselves."""
    T, H, W = depth.shape
    occupied = occupied_cells(tracks_uv, visible, W, H, grid)
    ys = np.minimum(np.arange(H) * grid // H, grid - 1)
    xs = np.minimum(np.arange(W) * grid // W, grid - 1)
    cell = (ys[:, None] * grid + xs[None, :]).ravel()
    size = np.bincount(cell, minlength=grid * grid)
    counts = np.zeros(3)
    for t in frames_releasing(T, frames, depth):
        gray = cv2.cvtColor(np.ascontiguousarray(frames[t]), cv2.COLOR_RGB2GRAY)
        eig = texture_map(gray, tex.track.window_px)
        d = depth[t]
        known = np.isfinite(d) & (d > 0) & (d <= tex.max_depth_m)
        known_share = np.bincount(cell, known.ravel(), grid * grid) / size
        flat_share = np.bincount(cell, (known & (eig < tex.min_corner_eig)).ravel(), grid * grid) / np.maximum(
            np.bincount(cell, known.ravel(), grid * grid), 1
        )
        empty = ~occupied[t]
        no_depth = empty & (known_share < 0.5)
        flat = empty & ~no_depth & (flat_share > 0.9)
        counts += [no_depth.sum(), flat.sum(), (empty & ~no_depth & ~flat).sum()]
    return EmptyCells(*(counts / max(1, T * grid * grid)).tolist())


def lk_step_jump_m(frames: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, tex: TextureSettings,
                   step_px: int = 24) -> float:
    """Median 3D jump (m) of textured grid points that plain forward-backward LK follows one frame on.

    With depth that agrees between frames a followed static point barely moves in 3D (Meta-World, given depth:
    0.13-0.16 cm); depth that flickers or has no consistent scale (a random model: 3-9 cm on real clips) makes the
    tracker refuse the steps LK got right, which empties cells for a reason frame rate cannot fix. NaN when LK
    follows fewer than MIN_FOLLOWED of them (independent noise frames: 8%; the real clips: 54-94%).
    """
    T, H, W = depth.shape
    vv, uu = np.mgrid[step_px // 2 : H : step_px, step_px // 2 : W : step_px]
    grid = np.stack([uu.ravel(), vv.ravel()], -1).astype(np.float32)
    jumps, tried = [], 0
    nxt = cv2.cvtColor(np.ascontiguousarray(frames[0]), cv2.COLOR_RGB2GRAY) if T else None
    for t in frames_releasing(T - 1, frames, depth):
        cur, nxt = nxt, cv2.cvtColor(np.ascontiguousarray(frames[t + 1]), cv2.COLOR_RGB2GRAY)
        eig = texture_map(cur, tex.track.window_px)
        p0 = grid[eig[grid[:, 1].astype(int), grid[:, 0].astype(int)] >= tex.min_corner_eig]
        if not len(p0):
            continue
        p1, ok, fb = lk_forward_backward(cur, nxt, p0, p0, tex.track)
        ok &= fb < tex.track.fb_max_px
        tried += len(ok)
        a = lift_points(p0[ok], depth[t], K, w2c[t])
        b = lift_points(p1[ok], depth[t + 1], K, w2c[t + 1])
        j = np.linalg.norm(a - b, axis=1)
        jumps.append(j[np.isfinite(j)])
    j = np.concatenate(jumps) if jumps else np.zeros(0)
    if len(j) < MIN_FOLLOWED * tried or not len(j):  # LK does not follow the image: the motion is the cause
        return float("nan")
    return float(np.median(j))


def coverage_cause(cells: EmptyCells, min_coverage: float, depth_jump_m: float = 0.02) -> str:
    """One sentence naming what left the cells empty (the CLI's advice keys on its first words).

    Cells without depth can never hold a lifted track, so they are the cause only when they alone keep
    coverage below `min_coverage`; otherwise the larger of the kinds tracking could have filled is.
    """
    shares = (
        f"{cells.no_depth:.0%} of the image has no usable depth, {cells.flat:.0%} is below the texture threshold, "
        f"{cells.lost:.0%} is textured with depth but lost its tracks"
    )
    if cells.no_depth > 1 - min_coverage:
        cause = "much of the image has no usable depth (sky, far plane, beyond lift.max_depth_m)"
    elif cells.flat >= cells.lost:
        cause = "the video has little texture"
    elif cells.lk_jump_m > depth_jump_m:
        cause = (
            f"the depth disagrees with the image motion: points LK follows from frame to frame jump "
            f"{100 * cells.lk_jump_m:.1f} cm in 3D (median), more than track.depth_jump_m={depth_jump_m:g} m, so "
            "the tracker drops them (predicted depth that flickers between frames, or has no consistent scale)"
        )
    else:
        cause = "tracks were lost to fast motion, camera rotation or occlusion"
    return f"{cause} ({shares})"


def filter_tracks(ep: Episode, cfg: FilterConfig, texture: TextureSettings | None = None) -> Episode:
    """Set is_moving and track_coverage; reject the episode when coverage < min_track_coverage.

    The rejection names what left the cells empty when the episode still holds its frames and depth.
    """
    width, height = ep.image_size
    visible = ep.visible & np.isfinite(ep.tracks_xyz).all(-1)
    moving = is_moving(ep.tracks_xyz, visible, ep.K, ep.w2c, width, height, cfg)
    cov = track_coverage(ep.tracks_uv, ep.visible, width, height, cfg.coverage_grid)
    ep = ep.replace(is_moving=moving, track_coverage=cov)
    if cov < cfg.min_track_coverage:
        g = cfg.coverage_grid
        if ep.frames is not None and ep.depth is not None and len(ep.frames) == ep.visible.shape[1]:
            tex = texture or TextureSettings()
            cells = empty_cells(ep.tracks_uv, ep.visible, ep.frames, ep.depth, g, tex)
            if ep.K is not None and ep.w2c is not None and cells.lost > cells.flat:
                depth = ep.clean_depth if ep.clean_depth is not None else ep.depth
                cells = cells._replace(lk_jump_m=lk_step_jump_m(ep.frames, depth, ep.K, ep.w2c, tex))
            cause = coverage_cause(cells, cfg.min_track_coverage, tex.track.depth_jump_m)
        else:
            cause = "usual causes are heavy camera rotation, fast motion or textureless video"
        msg = (
            f"track coverage {cov:.2f} < {cfg.min_track_coverage:.2f}: on average only {cov:.0%} of the "
            f"{g}x{g} image cells hold a visible track ({ep.visible.shape[0]} tracks, {ep.visible.shape[1]} frames); "
            + cause
        )
        ep = ep.replace(status="rejected", errors={**ep.errors, "filter": msg})
    return ep


class FilterSettings(NamedTuple):
    filter: FilterConfig
    texture: TextureSettings


class MotionFilter(Stage[FilterSettings]):
    """Stage 5 (docs/method.md#stage-5-motion-filter-and-coverage): moving tracks, and the coverage rejection rule."""

    name = "filter"

    def settings(self, cfg: IngestConfig) -> FilterSettings:
        tex = TextureSettings(cfg.keypoints.min_corner_eig, cfg.lift.max_depth_m, cfg.track)
        return FilterSettings(cfg.filter, tex)

    def run(self, ep: Episode, settings: FilterSettings) -> Episode:
        return filter_tracks(ep, settings.filter, settings.texture)
