"""Stage 6: arc-length retargeting, checked against hand-computed samples."""

from __future__ import annotations

import numpy as np

from tasks.config import RetargetConfig
from tasks.extract.retarget import retarget, robust_segment_speed

W, H = 100, 50
CFG = RetargetConfig()  # step 0.05, top 2%


def line(u0: float, du: float, v0: float, dv: float, S: int, z: float = 1.0) -> np.ndarray:
    k = np.arange(S, dtype=np.float64)
    return np.stack([u0 + du * k, v0 + dv * k, np.full(S, z)], -1)


def test_constant_speed_gives_a_sample_every_half_frame():
    traj = line(10, 10, 20, 0, 5, z=2.0)[None]  # 10 px of 100 = 0.1 normalised per frame
    out, ok = retarget(traj, np.ones((1, 5), bool), W, H, CFG, 12)
    assert out.shape == (1, 12, 3) and ok.shape == (1, 12)
    np.testing.assert_array_equal(ok[0], [True] * 9 + [False] * 3)  # arc 0.4 -> samples 0..8, tau = i/2
    np.testing.assert_allclose(out[0, :9, 0], 10 + 5 * np.arange(9), atol=1e-9)
    np.testing.assert_allclose(out[0, :9, 1:], np.tile([20.0, 2.0], (9, 1)))
    assert np.isnan(out[0, 9:]).all()


def test_depth_counts_in_meters():
    traj = np.stack([np.full(3, 50.0), np.full(3, 25.0), 1.0 + 0.2 * np.arange(3)], -1)[None]  # 0.2 m per frame
    out, ok = retarget(traj, np.ones((1, 3), bool), W, H, CFG, 10)
    assert ok[0].sum() == 9  # arc 0.4 / 0.05 + 1
    np.testing.assert_allclose(out[0, :9, 2], 1.0 + 0.05 * np.arange(9), atol=1e-9)


def test_fast_tracks_dominate_the_top_two_percent():
    S, N = 4, 100
    traj = np.stack([line(0, 20, 10, 0, S)] + [line(0, 10, 10, 0, S)] + [line(50, 0, 0, 0.5, S)] * (N - 2))
    # top 2% of 100 = the two fastest: (0.2 + 0.1) / 2 = 0.15 per frame, so tau_i = i / 3
    speed = robust_segment_speed(np.full((N, 1), 0.01) + np.eye(N, 1) * 0.19, np.ones((N, 1), bool), 0.02)
    np.testing.assert_allclose(speed, [(0.2 + 0.01) / 2])
    out, ok = retarget(traj, np.ones((N, S), bool), W, H, CFG, 12)
    assert ok.sum(1).tolist() == [10] * N  # arc 0.45 -> samples 0..9, the last one exactly at the end
    tau = np.arange(10) / 3
    np.testing.assert_allclose(out[0, :10, 0], 20 * tau, atol=1e-9)
    np.testing.assert_allclose(out[1, :10, 0], 10 * tau, atol=1e-9)
    np.testing.assert_allclose(out[7, :10, 1], 0.5 * tau, atol=1e-9)  # slow tracks follow the same clock
    # with 10 tracks the top 2% is a single track: the fastest alone sets the clock
    out10, ok10 = retarget(traj[:10], np.ones((10, S), bool), W, H, CFG, 20)
    assert ok10[0].sum() == 13  # arc 0.6 / 0.05 + 1
    np.testing.assert_allclose(out10[1, :13, 0], 10 * np.arange(13) / 4, atol=1e-9)


def test_validity_needs_both_neighbouring_frames():
    traj = np.stack([line(0, 10, 0, 0, 5), line(0, 5, 20, 0, 5)])
    valid = np.ones((2, 5), bool)
    valid[1, 2] = False
    out, ok = retarget(traj, valid, W, H, CFG, 10)  # clock from track 0 (top 1 of 2): tau = i / 2
    np.testing.assert_array_equal(ok[0], [True] * 9 + [False])
    np.testing.assert_array_equal(ok[1], [True, True, True, False, False, False, True, True, True, False])
    np.testing.assert_allclose(out[1, [0, 1, 2, 6, 7, 8], 0], 2.5 * np.array([0, 1, 2, 6, 7, 8]), atol=1e-9)
    assert np.isnan(out[1, 3:6]).all()


def test_invalid_segments_do_not_drive_the_clock():
    traj = np.stack([line(0, 10, 0, 0, 3), line(0, 90, 0, 0, 3)])  # track 1 would be 0.9 per frame...
    valid = np.array([[True] * 3, [True, False, False]])  # ...but it is never seen moving
    out, ok = retarget(traj, valid, W, H, CFG, 6)
    np.testing.assert_array_equal(ok[0], [True] * 5 + [False])
    np.testing.assert_array_equal(ok[1], [True] + [False] * 5)


def test_pause_is_skipped():
    u = np.array([0, 10, 10, 10, 20.0])  # moves, stands still for two frames, moves again
    traj = np.stack([u, np.zeros(5), np.ones(5)], -1)[None]
    out, ok = retarget(traj, np.ones((1, 5), bool), W, H, CFG, 8)
    np.testing.assert_array_equal(ok[0], [True] * 5 + [False] * 3)
    np.testing.assert_allclose(out[0, :5, 0], [0, 5, 10, 15, 20], atol=1e-9)  # tau = 0, .5, 1, 3.5, 4


def test_zero_motion_keeps_only_the_anchor():
    traj = np.tile([[30.0, 20.0, 1.5]], (3, 6, 1))
    out, ok = retarget(traj, np.ones((3, 6), bool), W, H, CFG, 8)
    np.testing.assert_array_equal(ok, np.tile(np.arange(8) == 0, (3, 1)))
    np.testing.assert_allclose(out[:, 0], traj[:, 0])
    assert np.isnan(out[:, 1:]).all()
    out1, ok1 = retarget(traj[:, :1], np.ones((3, 1), bool), W, H, CFG, 4)  # a single frame
    assert ok1[:, 0].all() and not ok1[:, 1:].any()
    out0, ok0 = retarget(np.zeros((0, 5, 3)), np.zeros((0, 5), bool), W, H, CFG, 4)
    assert out0.shape == (0, 4, 3) and ok0.shape == (0, 4)
