"""A moving point that LK loses and no neighbour carries ends, instead of waiting where it was lost.

The case from the sweep (reach, orbit, 60 fps; BENCHMARKS.md): points on a robot's smooth forearm lose their
texture to shading, LK gives up, nothing moving like them is left to carry them, and the smooth surface at the
spot where they were lost still has the right depth and look, so they were found there again and walked on as
static points while the arm moved on. Here: a plane 1.5 m away slides down 0.5 px (8.7 mm) per frame; its fine
texture fades at frame 10, leaving shading that varies across the slide only, so it looks the same wherever
it slides."""

from __future__ import annotations

import numpy as np

from tasks.config import TrackConfig
from tasks.extract.chunks import Window
from tasks.extract.lift import lift_points
from tasks.extract.lk import Walk
from tasks.geometry import pinhole

W, H, T, FADE, SPEED_PX = 96, 72, 20, 10, 0.5
DEPTH_M = 1.5


def sliding_plane() -> Window:
    rng = np.random.default_rng(0)
    ang, freq = rng.uniform(0, np.pi, 12), rng.uniform(0.2, 0.5, 12)
    phase = rng.uniform(0, 2 * np.pi, 12)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    gray = []
    for t in range(T):
        y = v - SPEED_PX * t  # surface coordinates: the plane slides down
        fine = np.cos(u[..., None] * freq * np.cos(ang) + y[..., None] * freq * np.sin(ang) + phase).sum(-1)
        gray.append(128 + 60 * np.sin(u / 8) + (3 * fine if t < FADE else 0))  # shading across the slide hides it
    gray = np.clip(np.stack(gray), 0, 255).astype(np.uint8)
    K = pinhole(W, H, 0.9 * W)
    return Window(0, gray, np.full((T, H, W), DEPTH_M, np.float32), np.tile(np.eye(4), (T, 1, 1)), K)


def walk(end_lost_movers: bool) -> tuple[np.ndarray, np.ndarray]:
    win = sliding_plane()
    uv = np.array([[48.0, 30.0]], np.float32)
    w = Walk.start(0, 1, uv, lift_points(uv, win.depth(0), win.K, win.w2c(0)), np.zeros(1, bool))
    tracks, vis = np.full((1, T, 2), np.nan, np.float32), np.zeros((1, T), bool)
    w.advance(win, T, TrackConfig(end_lost_movers=end_lost_movers), tracks, vis)
    return tracks[0], vis[0]


def test_the_point_is_followed_while_textured_and_ends_when_lost():
    uv, vis = walk(end_lost_movers=True)
    assert vis[1:FADE].all() and not vis[FADE:].any(), vis
    assert abs(uv[FADE - 1, 1] - (30 + SPEED_PX * (FADE - 1))) < 0.5  # it did slide with the plane


def test_without_the_rule_it_is_found_again_where_it_was_lost_and_stays_there():
    uv, vis = walk(end_lost_movers=False)
    assert vis[1:FADE].all() and vis[FADE:].all(), vis
    stuck = uv[FADE:, 1]
    assert np.ptp(stuck) < 0.5 and (30 + SPEED_PX * (T - 1)) - stuck[-1] > 4  # 5 px (8.7 cm) behind the plane
