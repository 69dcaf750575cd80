"""A synthetic video of any length, rendered a window at a time: a textured wall 2 m away, a textured box 1.5 m
away sliding left and right, and (from frame `enter` on) a second box that appears in front of the wall.

With `cut_every`, the video cuts between two walls every that many frames (the same box still sliding), as
long footage does; static camera, exact depth. `SceneVideo.window` renders only the frames asked for, so a long video never sits in
memory (the long-video benchmark); `episode` renders all of it as the ingest pipeline holds it after stage 2.
"""

from __future__ import annotations

import numpy as np

from tasks.config import KeypointConfig, LiftConfig
from tasks.extract.chunks import Window
from tasks.extract.keypoints import propose
from tasks.extract.lift import filter_depth_edges
from tasks.geometry import pinhole
from tasks.types import Episode, EpisodeSource

WALL_M, BOX_M, NEW_BOX_M = 2.0, 1.5, 1.6


def _pattern(rng, waves: int = 16):
    """A smooth random texture as a function of (u, v) pixels, so it can be drawn at any sub-pixel offset."""
    ang = rng.uniform(0, np.pi, waves)
    freq = rng.uniform(0.04, 0.15, waves) * 2 * np.pi  # cycles per pixel: fine enough for corners, coarse for LK
    k, phase = np.stack([np.cos(ang), np.sin(ang)], 1) * freq[:, None], rng.uniform(0, 2 * np.pi, waves)

    def draw(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        val = np.cos(u[..., None] * k[:, 0] + v[..., None] * k[:, 1] + phase).sum(-1)
        return 128 + 90 * val / np.sqrt(waves / 2)

    return draw


class SceneVideo:
    def __init__(self, n_frames: int, width: int = 96, height: int = 72, enter: int | None = None, seed: int = 0,
                 cut_every: int | None = None):
        rng = np.random.default_rng(seed)
        self.n_frames, self.image_size = n_frames, (width, height)
        self.enter = n_frames if enter is None else enter
        self.K = pinhole(width, height, 0.9 * width)
        self.v, self.u = np.mgrid[0:height, 0:width].astype(np.float64)
        self.side = side = max(8, height // 3)
        self.wall = _pattern(rng)(self.u, self.v)
        self.box, self.new_box = _pattern(rng), _pattern(rng)(self.u, self.v)
        self.box_y, self.box_x0, self.amp = height // 6, width // 4, width // 8
        self.new_at = (height - side - height // 8, width - side - width // 6)  # (row, col): lower right
        self.lift = LiftConfig()
        self.cut_every = cut_every or n_frames
        self.other_wall = _pattern(np.random.default_rng(seed + 1))(self.u, self.v)

    def box_x(self, t: int) -> float:
        """Column of the sliding box's left edge at frame t (a period of 120 frames, at most 0.6 px a frame)."""
        return self.box_x0 + self.amp * np.sin(2 * np.pi * t / 120)

    def new_box_cells(self) -> tuple[slice, slice]:
        r, c = self.new_at
        return slice(r, r + self.side), slice(c, c + self.side)

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Grey frame (H,W) uint8 and depth (H,W) float32 m."""
        wall = self.other_wall if (t // self.cut_every) % 2 else self.wall
        img, z = wall.copy(), np.full(self.wall.shape, WALL_M, np.float32)
        if t >= self.enter:
            rows, cols = self.new_box_cells()
            img[rows, cols], z[rows, cols] = self.new_box[rows, cols], NEW_BOX_M
        n, x, y = self.side, self.box_x(t), self.box_y
        # the box's cover of each pixel (anti-aliased left and right edges), its texture moving with it
        rows, cols = slice(y, y + n), slice(max(0, int(np.floor(x)) - 1), int(np.ceil(x)) + n + 1)
        u, v = self.u[rows, cols], self.v[rows, cols]
        alpha = np.clip(np.minimum(u - x + 0.5, x + n - 0.5 - u), 0, 1)
        img = img.astype(np.float64)
        img[rows, cols] = (1 - alpha) * img[rows, cols] + alpha * self.box(u - x, v - y)
        z[rows, cols][alpha >= 0.5] = BOX_M
        return np.clip(np.rint(img), 0, 255).astype(np.uint8), z

    def _frames(self, lo: int, hi: int):
        gray, depth = zip(*(self.render(t) for t in range(lo, hi)))
        gray, depth = np.stack(gray), np.stack(depth)
        clean = filter_depth_edges(depth, self.lift.edge_rel_jump, self.lift.edge_kernel_px, self.lift.max_depth_m)
        return gray, depth, clean

    def window(self, lo: int, hi: int) -> Window:
        gray, _, clean = self._frames(lo, hi)
        return Window(lo, gray, clean, np.tile(np.eye(4), (hi - lo, 1, 1)), self.K)

    def first_seeds(self, kcfg: KeypointConfig, window_px: int) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2's queries at frame 0 (uv (S,2), flat (S,)), as the classical keypoint backend proposes them."""
        first = self.window(0, 1)
        return propose(first.gray(0), kcfg, window_px, np.isfinite(first.depth(0)), limit=kcfg.max_points)

    def episode(self, kcfg: KeypointConfig, window_px: int) -> Episode:
        """The whole video in memory with frame 0's seeds, as stage 3 receives it."""
        gray, depth, clean = self._frames(0, self.n_frames)
        uv, flat = self.first_seeds(kcfg, window_px)
        return Episode(
            source=EpisodeSource(uri="mem://scene", episode_id="scene", kind="video"),
            frames=np.repeat(gray[..., None], 3, -1), fps=10.0, depth=depth, clean_depth=clean, K=self.K,
            w2c=np.tile(np.eye(4), (self.n_frames, 1, 1)), gray=gray, seed_uv=uv, seed_flat=flat,
        )
