"""Stage 4: reprojection through camera t removes ego-motion."""

from __future__ import annotations

import numpy as np

from tasks.geometry import invert_rigid, transform
from tasks.extract.reproject import uvz_through, uvz_valid

K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])


def translating_camera(T: int, speed: float = 0.1) -> np.ndarray:
    """Camera centre at (speed*t, 0, 0), looking down +z."""
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, 0, 3] = -speed * np.arange(T)
    return w2c


def test_static_point_seen_by_moving_camera():
    T = 5
    w2c = translating_camera(T)
    xyz = np.tile([0.2, -0.1, 2.0], (1, T, 1))  # (1, T, 3) static world point
    for t in range(T):
        uvz = uvz_through(t, xyz, K, w2c)
        assert uvz.shape == (1, T, 3)
        expected = [63.5 + 100 * (0.2 - 0.1 * t) / 2.0, 47.5 - 100 * 0.1 / 2.0, 2.0]
        np.testing.assert_allclose(uvz[0], np.tile(expected, (T, 1)), atol=1e-9)


def test_point_moving_with_camera_stays_put_and_offscreen_is_kept():
    rng = np.random.default_rng(3)
    T = 6
    w2c = np.tile(np.eye(4), (T, 1, 1))
    for t in range(T):
        a = 0.1 * t
        w2c[t, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        w2c[t, :3, 3] = rng.normal(size=3)
    cam_pts = np.array([[0.1, 0.2, 1.5], [30.0, 0.0, 1.0]])  # the second projects far off-screen
    xyz = transform(invert_rigid(w2c)[None], np.repeat(cam_pts[:, None], T, 1))  # rigidly attached to the camera
    seen = np.stack([uvz_through(t, xyz, K, w2c)[:, t] for t in range(T)], 1)  # (2, T, 3): at time t via camera t
    expected = [63.5 + 100 * 0.1 / 1.5, 47.5 + 100 * 0.2 / 1.5, 1.5]
    np.testing.assert_allclose(seen[0], np.tile(expected, (T, 1)), atol=1e-9)
    np.testing.assert_allclose(seen[1, :, 0], 63.5 + 3000.0, atol=1e-7)  # not clipped
    assert uvz_valid(seen).all()


def test_behind_camera_and_unknown_are_nan():
    w2c = translating_camera(2)
    xyz = np.array([[[0.0, 0.0, -1.0], [np.nan, np.nan, np.nan]], [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    uvz = uvz_through(0, xyz, K, w2c)
    np.testing.assert_array_equal(uvz_valid(uvz), [[False, False], [False, True]])
    assert np.isnan(uvz[0]).all() and np.isnan(uvz[1, 0]).all()
    np.testing.assert_allclose(uvz[1, 1], [63.5, 47.5, 1.0])
