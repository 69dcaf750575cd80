"""Stage 5: motion filter thresholds and patch coverage, on hand-made tracks."""

from __future__ import annotations

import numpy as np

from tasks.config import FilterConfig
from tasks.geometry import project
from tasks.extract.motion_filter import filter_tracks, is_moving, track_coverage
from tasks.types import Episode, EpisodeSource

W, H = 200, 100
DIAG = float(np.hypot(W, H))  # 223.6 px; 5% = 11.18 px
K = np.array([[100.0, 0, 99.5], [0, 100.0, 49.5], [0, 0, 1]])
CFG = FilterConfig()


def static_cams(T: int) -> np.ndarray:
    return np.tile(np.eye(4), (T, 1, 1))


def track_moving_u(pixels: float, T: int = 10, z: float = 2.0) -> np.ndarray:
    """World track (T,3) whose projection moves `pixels` along u between frames 0 and T-1."""
    x = np.linspace(0, pixels * z / K[0, 0], T)
    return np.stack([x, np.zeros(T), np.full(T, z)], -1)


def test_threshold_is_five_percent_of_the_diagonal():
    xyz = np.stack([track_moving_u(0.06 * DIAG), track_moving_u(0.04 * DIAG), track_moving_u(0.0)])
    vis = np.ones(xyz.shape[:2], bool)
    np.testing.assert_array_equal(is_moving(xyz, vis, K, static_cams(10), W, H, CFG), [True, False, False])


def test_out_and_back_counts_as_moving():
    x = np.concatenate([np.linspace(0, 0.3, 5), np.linspace(0.3, 0, 5)])  # 15 px out and back
    xyz = np.stack([x, np.zeros(10), np.full(10, 2.0)], -1)[None]
    assert is_moving(xyz, np.ones((1, 10), bool), K, static_cams(10), W, H, CFG)[0]


def test_depth_is_weighted_by_a_tenth():
    def along_axis(dz: float) -> np.ndarray:  # on the optical axis: only z changes
        return np.stack([np.zeros(2), np.zeros(2), [2.0, 2.0 + dz]], -1)

    xyz = np.stack([along_axis(100.0), along_axis(120.0)])  # 10 and 12 weighted units vs 11.18
    vis = np.ones((2, 2), bool)
    np.testing.assert_array_equal(is_moving(xyz, vis, K, static_cams(2), W, H, CFG), [False, True])
    unweighted = FilterConfig(z_weight=1.0)
    np.testing.assert_array_equal(is_moving(xyz, vis, K, static_cams(2), W, H, unweighted), [True, True])


def test_only_the_first_64_visible_frames_count():
    T = 100
    xyz = np.tile([0.0, 0.0, 2.0], (3, T, 1))
    vis = np.ones((3, T), bool)
    vis[:, 30:40] = False  # 64th visible frame is 73
    xyz[0, 74:, 0] = 0.5  # jumps 25 px after the window
    xyz[1, 70:, 0] = 0.5  # jumps inside the window
    xyz[2, 35, 0] = 0.5  # jumps only while not visible
    np.testing.assert_array_equal(is_moving(xyz, vis, K, static_cams(T), W, H, CFG), [False, True, False])


def test_static_point_is_still_under_camera_motion():
    T = 8
    w2c = static_cams(T)
    w2c[:, 0, 3] = -0.1 * np.arange(T)  # camera slides 0.7 m: the point sweeps 35 px in its own view
    xyz = np.tile([0.0, 0.0, 2.0], (1, T, 1))
    assert not is_moving(xyz, np.ones((1, T), bool), K, w2c, W, H, CFG)[0]


def test_coverage_exact_fraction():
    # 40x40 image, 4x4 grid: cells are 10 px wide, starting at the pixel edge -0.5
    uv = np.array(
        [
            [[0.0, 0.0], [-0.5, -0.5]],  # cell (0,0) in both frames (border pixel edge included)
            [[9.4, 0.0], [39.5, 39.5]],  # cell (0,0) again; then (3,3) on the far edge
            [[9.5, 0.0], [9.5, 20.0]],  # cell (1,0); then (1,2)
            [[20.0, 20.0], [30.0, 0.0]],  # invisible in frame 0; cell (3,0)
            [[45.0, 5.0], [5.0, 15.0]],  # off-screen; cell (0,1)
        ]
    )
    vis = np.ones((5, 2), bool)
    vis[3, 0] = False
    # frame 0: cells {(0,0), (1,0)} = 2/16; frame 1: {(0,0), (3,3), (1,2), (3,0), (0,1)} = 5/16
    assert track_coverage(uv, vis, 40, 40, grid=4) == (2 / 16 + 5 / 16) / 2
    assert track_coverage(np.zeros((0, 3, 2)), np.zeros((0, 3), bool), 40, 40, grid=4) == 0.0


def episode(xyz: np.ndarray, vis: np.ndarray, w: int, h: int) -> Episode:
    T = xyz.shape[1]
    return Episode(
        source=EpisodeSource(uri="mem://test", episode_id="e"),
        frames=np.zeros((T, h, w, 3), np.uint8),
        K=K,
        w2c=static_cams(T),
        tracks_uv=project(xyz, K)[..., :2].astype(np.float32),
        visible=vis,
        tracks_xyz=xyz.astype(np.float32),
    )


def test_filter_tracks_sets_fields_and_rejects_low_coverage():
    xyz = np.stack([track_moving_u(20.0), track_moving_u(0.0)])
    ep = filter_tracks(episode(xyz, np.ones((2, 10), bool), W, H), CFG)
    assert ep.status == "rejected"
    np.testing.assert_array_equal(ep.is_moving, [True, False])
    assert 0 < ep.track_coverage < 0.05
    assert ep.errors["filter"].startswith(f"track coverage {ep.track_coverage:.2f} < 0.60")
    # a grid of tracks over the whole image passes
    u, v = np.meshgrid((np.arange(16) + 0.5) * W / 16 - 0.5, (np.arange(16) + 0.5) * H / 16 - 0.5)
    cam = np.stack([(u.ravel() - K[0, 2]) / K[0, 0], (v.ravel() - K[1, 2]) / K[1, 1], np.ones(256)], -1) * 2.0
    ok = filter_tracks(episode(np.repeat(cam[:, None], 3, 1), np.ones((256, 3), bool), W, H), CFG)
    assert ok.status == "ok" and ok.track_coverage == 1.0 and not ok.is_moving.any() and "filter" not in ok.errors
