"""B-spline fit/render: exact recovery, regularisation, masking, validity and clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bspline import (
    DeltaScale,
    basis_matrix,
    clamped_knots,
    delta_scale,
    fit_control_points,
    from_targets,
    normalize_pixels,
    render,
    to_targets,
)

H = 32


def _known_curves(n: int, d: int = 10, seed: int = 0, amp: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Control points with P0 = 0 (anchor-consistent) and the curve they generate."""
    rng = np.random.default_rng(seed)
    P = rng.uniform(-amp, amp, (n, d, 3))
    P[:, 0] = 0.0
    P = torch.tensor(P)
    return P, render(P, H)


def test_knots_match_released_vectors() -> None:
    assert clamped_knots(4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert clamped_knots(7).tolist() == [0] * 4 + [0.5] * 3 + [1] * 4
    np.testing.assert_allclose(clamped_knots(10), [0] * 4 + [1 / 3] * 3 + [2 / 3] * 3 + [1] * 4)


@pytest.mark.parametrize("d", [5, 8, 3])
def test_unsupported_n_ctrl_raises(d: int) -> None:
    with pytest.raises(ValueError, match=r"\(4, 7, 10\)"):
        basis_matrix(H, d)


@pytest.mark.parametrize("d", [4, 7, 10])
def test_basis_partition_of_unity_and_ends(d: int) -> None:
    A = basis_matrix(H, d, anchor=True)
    B = basis_matrix(H, d, anchor=False)
    assert A.shape == (H + 1, d) and B.shape == (H, d)
    np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(B.sum(1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(A[0], np.eye(d)[0])  # anchor row: t=0 is P0
    np.testing.assert_array_equal(A[-1], np.eye(d)[-1])  # t=1 clamps to the last control point
    np.testing.assert_array_equal(A[1:], B)  # no-anchor rows are t=(i+1)/H
    assert (A >= 0).all()


def test_cubic_bezier_segment_value() -> None:
    # D=4 is one Bezier segment: at t=1/2 the Bernstein weights are (1, 3, 3, 1) / 8.
    np.testing.assert_allclose(basis_matrix(2, 4)[1], [0.125, 0.375, 0.375, 0.125], atol=1e-12)


@pytest.mark.parametrize("d", [4, 7, 10])
def test_exact_recovery_without_regularisation(d: int) -> None:
    P, Y = _known_curves(6, d)
    ctrl, ok = fit_control_points(Y, torch.ones(6, H, dtype=torch.bool), n_ctrl=d, lam=0.0, clip=None)
    assert ok.all()
    torch.testing.assert_close(ctrl, P, atol=1e-5, rtol=0)
    torch.testing.assert_close(render(ctrl, H), Y, atol=1e-5, rtol=0)


def test_regularised_fit_small_but_nonzero_error() -> None:
    P, Y = _known_curves(64, amp=0.5)
    ctrl, _ = fit_control_points(Y, torch.ones(64, H, dtype=torch.bool), lam=0.2)
    err = (render(ctrl, H) - Y).norm(dim=-1).mean().item()
    # lam=0.2 shrinks successive control-point differences: mean L2 ~0.026 on these deliberately
    # wiggly curves (control points uniform in +-0.5), i.e. ~5% of the control-point range.
    assert 0.015 < err < 0.04, err
    assert ((ctrl - P).abs().max().item()) > 1e-3


def test_masked_steps_degrade_gracefully() -> None:
    P, Y = _known_curves(64, amp=0.5, seed=1)
    rng = np.random.default_rng(2)
    valid = torch.tensor(rng.random((64, H)) > 0.3)
    Y_pad = torch.where(valid[..., None], Y, torch.tensor(-np.inf, dtype=Y.dtype))  # loader pads with -inf
    full, _ = fit_control_points(Y, torch.ones_like(valid), lam=0.2)
    masked, ok = fit_control_points(Y_pad, valid, lam=0.2)
    assert torch.isfinite(masked).all()
    assert bool(ok.all()) == bool((valid.sum(1) >= 10).all())
    err_full = (render(full, H) - Y).norm(dim=-1).mean().item()
    err_masked = (render(masked, H) - Y).norm(dim=-1).mean().item()
    # ~0.025 with all steps vs ~0.036 with 30% dropped: worse, but bounded.
    assert err_full < err_masked < 2 * err_full, (err_full, err_masked)
    # Without regularisation the observed steps alone still pin the cubic down exactly.
    exact, _ = fit_control_points(Y_pad, valid, lam=0.0, clip=None)
    torch.testing.assert_close(render(exact, H), Y, atol=1e-5, rtol=0)


def test_too_few_valid_steps_not_ok() -> None:
    _, Y = _known_curves(3)
    valid = torch.zeros(3, H, dtype=torch.bool)
    valid[0, :9] = True  # 9 < D
    valid[1, ::3] = True  # 11 >= D
    valid[2, :10] = True  # == D
    ctrl, ok = fit_control_points(Y, valid)
    assert ok.tolist() == [False, True, True]
    assert torch.isfinite(ctrl).all()
    _, ok4 = fit_control_points(Y, valid, n_ctrl=10, min_valid=12)
    assert ok4.tolist() == [False, False, False]


def test_clip_is_elementwise() -> None:
    t = torch.linspace(1 / H, 1, H, dtype=torch.float64)
    Y = torch.stack([5 * t, 0.1 * t, -4 * t], dim=-1)[None]  # far outside +-1.5 on x and z only
    ctrl, _ = fit_control_points(Y, torch.ones(1, H, dtype=torch.bool), lam=0.0, clip=1.5)
    assert ctrl[..., 0].max().item() == pytest.approx(1.5)
    assert ctrl[..., 2].min().item() == pytest.approx(-1.5)
    assert ctrl[..., 1].abs().max().item() < 0.11  # unclipped axis untouched
    assert ctrl.abs().max().item() <= 1.5


def test_numpy_and_batched_leading_dims() -> None:
    P, Y = _known_curves(6)
    Yn = Y.numpy().reshape(2, 3, H, 3).astype(np.float32)
    ctrl, ok = fit_control_points(Yn, np.ones((2, 3, H), bool), lam=0.0, clip=None)
    assert ctrl.shape == (2, 3, 10, 3) and ctrl.dtype == torch.float32 and ok.shape == (2, 3)
    np.testing.assert_allclose(ctrl.numpy().reshape(6, 10, 3), P.numpy(), atol=1e-5)


def test_target_space_roundtrip_and_scale() -> None:
    rng = np.random.default_rng(3)
    deltas = rng.normal(size=(50, H, 3)) * np.array([0.1, 0.2, 0.05])
    valid = rng.random((50, H)) > 0.2
    deltas[~valid] = -np.inf
    s = delta_scale(deltas, valid)
    np.testing.assert_allclose(s, np.percentile(np.abs(deltas[valid]), 95, axis=0))
    np.testing.assert_allclose(s / np.array([0.1, 0.2, 0.05]), 1.96, rtol=0.05)  # |N(0,1)| p95
    cur = rng.normal(size=(50, 3))
    fut = cur[:, None] + rng.normal(size=(50, H, 3))
    tgt = to_targets(fut, cur, s)
    np.testing.assert_allclose(tgt, (fut - cur[:, None]) / s)
    np.testing.assert_allclose(from_targets(tgt, cur, s), fut)
    ds = DeltaScale(s)
    out = ds.from_targets(ds.to_targets(torch.tensor(fut), torch.tensor(cur)), torch.tensor(cur))
    np.testing.assert_allclose(out.numpy(), fut)
    np.testing.assert_allclose(normalize_pixels(np.array([[-0.5, -0.5], [639.5, 359.5]]), 640, 360), [[-1, -1], [1, 1]])
