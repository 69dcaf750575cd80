"""Trace metrics on hand-computed cases, masking, best-of, evaluation keys and baselines."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.train.metrics import (
    ade,
    best_of,
    constant_velocity,
    dtw,
    evaluate_traces,
    fde,
    frechet,
    zero_motion,
)


def _x(*xs: float) -> np.ndarray:
    """One trajectory (1, H, 2) along the x axis."""
    return np.array([[[x, 0.0] for x in xs]])


def _ones(h: int, n: int = 1) -> np.ndarray:
    return np.ones((n, h), bool)


def test_constant_offset_3_4_gives_5_everywhere() -> None:
    # gt moves perpendicular to the (3, 4) offset, so no warping path beats the diagonal.
    k = np.arange(6, dtype=float)[:, None]
    gt = (k * np.array([0.4, -0.3]))[None]
    pred = gt + np.array([3.0, 4.0])
    v = _ones(6)
    for fn in (ade, fde, dtw, frechet):
        np.testing.assert_allclose(fn(pred, gt, v), [5.0], atol=1e-12)


def test_time_shift_dtw_below_ade() -> None:
    gt, pred = _x(0, 1, 2, 3, 4, 5), _x(1, 2, 3, 4, 5, 6)  # same curve, one step ahead
    v = _ones(6)
    assert ade(pred, gt, v)[0] == pytest.approx(1.0)
    assert fde(pred, gt, v)[0] == pytest.approx(1.0)
    # Only the two end cells cost 1 (both must be on any path); the rest align at zero cost: 2/6.
    assert dtw(pred, gt, v)[0] == pytest.approx(2 / 6)
    assert frechet(pred, gt, v)[0] == pytest.approx(1.0)


def test_same_path_different_speed() -> None:
    pred, gt = _x(0, 0, 1, 2), _x(0, 1, 2, 2)
    v = _ones(4)
    assert ade(pred, gt, v)[0] == pytest.approx(0.5)
    assert fde(pred, gt, v)[0] == pytest.approx(0.0)
    assert dtw(pred, gt, v)[0] == pytest.approx(0.0)
    assert frechet(pred, gt, v)[0] == pytest.approx(0.0)


def test_frechet_known_pair_bump() -> None:
    pred = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]])
    gt = np.array([[[0.0, 0.0], [1.0, 2.0], [2.0, 0.0]]])
    v = _ones(3)
    # The bump apex (1, 2) is >= 2 from every pred point; the diagonal coupling reaches exactly 2.
    assert frechet(pred, gt, v)[0] == pytest.approx(2.0)
    assert dtw(pred, gt, v)[0] == pytest.approx(2 / 3)
    assert ade(pred, gt, v)[0] == pytest.approx(2 / 3)
    assert fde(pred, gt, v)[0] == pytest.approx(0.0)


def _ref_dp(p: np.ndarray, g: np.ndarray, frechet_mode: bool) -> float:
    n = len(p)
    c = np.linalg.norm(p[:, None] - g[None], axis=-1)
    acc = np.full((n + 1, n + 1), np.inf)
    acc[0, 0] = -np.inf if frechet_mode else 0.0
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            prev = min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
            acc[i, j] = max(c[i - 1, j - 1], prev) if frechet_mode else c[i - 1, j - 1] + prev
    return acc[n, n] if frechet_mode else acc[n, n] / n


def test_vectorised_dp_matches_reference_with_masks() -> None:
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(size=(20, 9, 3)), rng.normal(size=(20, 9, 3))
    valid = rng.random((20, 9)) > 0.35
    valid[0] = False
    gt[~valid] = -np.inf  # loader padding must never leak in
    d, f = dtw(pred, gt, valid), frechet(pred, gt, valid)
    assert np.isnan(d[0]) and np.isnan(f[0])
    for k in range(1, 20):
        m = valid[k]
        assert d[k] == pytest.approx(_ref_dp(pred[k][m], gt[k][m], False))
        assert f[k] == pytest.approx(_ref_dp(pred[k][m], gt[k][m], True))


def test_validity_masks_respected() -> None:
    gt = _x(0, 1, 2, 3, 4)
    pred = gt + np.array([0.0, 1.0])
    pred[0, 2] = [1e6, 1e6]  # garbage at an invalid step
    pred[0, 4] = [-7.0, 3.0]
    gt[0, 4] = [-np.inf, -np.inf]
    valid = np.array([[True, True, False, True, False]])
    assert ade(pred, gt, valid)[0] == pytest.approx(1.0)
    assert fde(pred, gt, valid)[0] == pytest.approx(1.0)  # last valid step is index 3
    pred[0, 3] = [3.0, 4.0]  # now off by 4 at the last valid step
    assert fde(pred, gt, valid)[0] == pytest.approx(4.0)
    assert ade(pred, gt, valid)[0] == pytest.approx(2.0)
    none = np.zeros_like(valid)
    for fn in (ade, fde, dtw, frechet):
        assert np.isnan(fn(pred, gt, none)[0])


def test_best_of_picks_per_trajectory_min() -> None:
    gt = np.zeros((2, 4, 2))
    s0 = gt + np.array([[[1.0, 0.0]], [[3.0, 0.0]]])  # traj0: 1, traj1: 3
    s1 = gt + np.array([[[2.0, 0.0]], [[0.5, 0.0]]])  # traj0: 2, traj1: 0.5
    valid = _ones(4, 2)
    np.testing.assert_allclose(best_of(np.stack([s0, s1]), gt, valid, "ade"), [1.0, 0.5])
    np.testing.assert_allclose(best_of(np.stack([s0, s1]), gt, valid, fde), [1.0, 0.5])
    valid[1] = False
    out = best_of(np.stack([s0, s1]), gt, valid, "frechet")
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1])


def test_evaluate_traces_keys_dims_and_horizons() -> None:
    H, N = 32, 3
    gt = np.zeros((N, H, 3))
    k = np.arange(1, H + 1, dtype=float)
    s0 = gt.copy()
    s0[..., 0] = 3 * k / k  # uv offset (3, 4): 5 at every step
    s0[..., 1] = 4.0
    s0[..., 2] = 0.01 * k  # depth error grows 1 cm per step
    s1 = gt.copy()
    s1[..., 2] = 1.0  # perfect uv, constant 1 m depth error
    out = evaluate_traces(np.stack([s0, s1]), gt, _ones(H, N))
    assert out["uv/ade@8"] == pytest.approx(5.0)
    assert out["uv/fde@16"] == pytest.approx(5.0)
    assert out["depth/ade@8"] == pytest.approx(0.045)  # mean(1..8) cm
    assert out["depth/fde@32"] == pytest.approx(0.32)
    assert out["uvz/fde@8"] == pytest.approx(np.hypot(5.0, 0.08))
    assert out["uv/minADE2@32"] == pytest.approx(0.0)  # sample 1 is exact in uv
    assert out["depth/minFDE2@32"] == pytest.approx(0.32)  # sample 0 better at the end
    assert out["depth/minADE2@8"] == pytest.approx(0.045)
    assert out["uvz/minFrechet2@16"] == pytest.approx(1.0)
    assert out["uvz/minDTW2@16"] == pytest.approx(1.0)
    assert len(out) == 3 * 3 * 8
    assert "uv/ade@64" not in evaluate_traces(np.stack([s0]), gt, _ones(H, N), horizons=(8, 64))


def test_baselines_on_constant_speed_line() -> None:
    H, vel = 32, np.array([0.01, -0.02, 0.005])
    cur = np.array([[0.1, 0.2, 1.0], [-0.3, 0.0, 2.0]])
    hist = cur[:, None] + np.arange(-4, 0)[None, :, None] * vel  # oldest -> newest
    fut = cur[:, None] + np.arange(1, H + 1)[None, :, None] * vel
    valid = _ones(H, 2)
    cv = constant_velocity(hist, cur, H)
    np.testing.assert_allclose(ade(cv, fut, valid), 0.0, atol=1e-12)
    np.testing.assert_allclose(fde(cv, fut, valid), 0.0, atol=1e-12)
    zm = zero_motion(cur, H)
    speed = np.linalg.norm(vel)
    np.testing.assert_allclose(ade(zm, fut, valid), speed * (H + 1) / 2)
    np.testing.assert_allclose(fde(zm, fut, valid), speed * H)
    # Missing history falls back to zero motion (whole batch, or per keypoint via mask / -inf).
    np.testing.assert_array_equal(constant_velocity(None, cur, H), zm)
    np.testing.assert_array_equal(constant_velocity(hist[:, :0], cur, H), zm)
    hv = np.ones((2, 4), bool)
    hv[1, -1] = False
    mixed = constant_velocity(hist, cur, H, history_valid=hv)
    np.testing.assert_allclose(mixed[0], fut[0], atol=1e-12)
    np.testing.assert_array_equal(mixed[1], zm[1])
    padded = hist.copy()
    padded[0, -1] = -np.inf
    np.testing.assert_array_equal(constant_velocity(padded, cur, H)[0], zm[0])
