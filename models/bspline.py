"""Cubic B-spline trace parameterisation (docs/method.md#model-b-spline, docs/method.md#loader-conventions).

A keypoint's future trace over H steps is compressed to D control points P (D, C) so that the
rendered curve is ``basis(H x D) @ P``. Ground-truth control points come from a weighted,
Tikhonov-regularised least-squares fit on an (H+1) x D basis whose row 0 is an *anchor* at t=0
with target 0: targets are anchor-relative, so the curve must start at the current position.

Target space (``to_targets`` / ``from_targets``): (u, v) in normalised image space [-1, 1] and z in
meters, relative to the keypoint's current position, divided per axis by ``delta_scale``. The
*caller* normalises pixels first: ``u_n = (u + 0.5) / W * 2 - 1`` and ``v_n = (v + 0.5) / H * 2 - 1``
(``normalize_pixels`` does exactly this).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy.interpolate import BSpline

SUPPORTED_N_CTRL = (4, 7, 10)

ArrayLike = torch.Tensor | np.ndarray


def clamped_knots(n_ctrl: int, degree: int = 3) -> np.ndarray:
    """Clamped knot vector with internal knots of multiplicity 3 (Bezier-like cubic segments).

    Only the released loader's precomputed vectors are supported, so fitted control points stay
    interchangeable with its checkpoints: D=4 -> 1 segment, D=7 -> 2, D=10 -> 3.
    """
    if degree != 3 or n_ctrl not in SUPPORTED_N_CTRL:
        raise ValueError(
            f"only cubic splines with n_ctrl in {SUPPORTED_N_CTRL} are supported, got n_ctrl={n_ctrl}, degree={degree}"
        )
    n_seg = (n_ctrl - 1) // 3
    internal = [k / n_seg for k in range(1, n_seg) for _ in range(3)]
    return np.array([0.0] * 4 + internal + [1.0] * 4, dtype=np.float64)


@lru_cache(maxsize=32)
def _basis_cached(n_steps: int, n_ctrl: int, degree: int, anchor: bool) -> np.ndarray:
    knots = clamped_knots(n_ctrl, degree)
    # Anchor: t_i = i/H for i=0..H (row 0 = current position). No anchor: t_i = (i+1)/H, i=0..H-1.
    i = np.arange(n_steps + 1) if anchor else np.arange(1, n_steps + 1)
    t = i / float(n_steps)
    m = BSpline.design_matrix(t, knots, degree).toarray()  # scipy clamps t=1 to the last basis fn
    m.setflags(write=False)
    return m


def basis_matrix(n_steps: int, n_ctrl: int, degree: int = 3, anchor: bool = True) -> np.ndarray:
    """B-spline basis, (H+1) x D with the t=0 anchor row or H x D without; rows sum to 1."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    return _basis_cached(int(n_steps), int(n_ctrl), int(degree), bool(anchor)).copy()


def difference_operator(n_ctrl: int, order: int = 1) -> np.ndarray:
    """Gamma for the Tikhonov term: first-order ((D-1) x D, rows [-1, 1]) or second-order ([-1, 2, -1])."""
    if order == 1:
        return np.diff(np.eye(n_ctrl), axis=0)
    if order == 2:
        return -np.diff(np.eye(n_ctrl), n=2, axis=0)
    raise ValueError(f"order must be 1 or 2, got {order}")


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x))


def fit_control_points(
    target: ArrayLike,
    valid: ArrayLike,
    n_ctrl: int = 10,
    lam: float = 0.2,
    clip: float | None = 1.5,
    min_valid: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit control points to anchor-relative targets (..., H, C) with validity (..., H).

    Solves, per keypoint, ``min ||W (B P - Y)||^2 + ||lam * Gamma P||^2`` by stacking
    ``[W B; lam Gamma]`` over ``[W Y; 0]`` (one batched lstsq in float64). B includes the anchor row
    (target 0, weight 1); invalid steps get weight 0 and their (possibly -inf padded) targets are
    ignored. The result is clipped element-wise to +-clip. ``ok`` is True where the keypoint has at
    least ``min_valid`` (default D) valid steps -- the loader's rule for a usable keypoint.

    Returns ``(ctrl (..., D, C), ok (...,))``; ctrl has the input's float dtype (float32 for ints).
    """
    y = _as_tensor(target)
    m = _as_tensor(valid).to(torch.bool)
    if y.shape[:-1] != m.shape:
        raise ValueError(f"valid shape {tuple(m.shape)} must equal target shape minus channels {tuple(y.shape[:-1])}")
    out_dtype = y.dtype if y.is_floating_point() else torch.float32
    *lead, H, C = y.shape
    dev = y.device
    B = torch.as_tensor(basis_matrix(H, n_ctrl), dtype=torch.float64, device=dev)  # (H+1, D)
    G = torch.as_tensor(difference_operator(n_ctrl), dtype=torch.float64, device=dev)  # (D-1, D)

    y64 = torch.where(m[..., None], y.to(torch.float64), torch.zeros((), dtype=torch.float64, device=dev))
    w = torch.cat([torch.ones(*lead, 1, dtype=torch.float64, device=dev), m.to(torch.float64)], dim=-1)  # (..., H+1)
    wB = w[..., None] * B  # (..., H+1, D)
    wY = torch.cat([torch.zeros(*lead, 1, C, dtype=torch.float64, device=dev), y64], dim=-2) * w[..., None]
    A = torch.cat([wB, (lam * G).expand(*lead, *G.shape)], dim=-2)
    rhs = torch.cat([wY, torch.zeros(*lead, n_ctrl - 1, C, dtype=torch.float64, device=dev)], dim=-2)
    # gelsd (SVD) gives the minimum-norm solution when lam=0 and too few steps are valid.
    driver = "gelsd" if dev.type == "cpu" else None
    ctrl = torch.linalg.lstsq(A, rhs, driver=driver).solution
    if clip is not None:
        ctrl = ctrl.clamp(-clip, clip)
    need = n_ctrl if min_valid is None else min_valid
    ok = m.sum(dim=-1) >= need
    return ctrl.to(out_dtype), ok


def render(ctrl: ArrayLike, n_steps: int) -> torch.Tensor:
    """Curve (..., H, C) at t_i = (i+1)/H from control points (..., D, C): ``basis(H x D) @ P``."""
    P = _as_tensor(ctrl)
    if not P.is_floating_point():
        P = P.to(torch.float32)
    B = torch.as_tensor(basis_matrix(n_steps, P.shape[-2], anchor=False), dtype=P.dtype, device=P.device)
    return B @ P


def normalize_pixels(uv: ArrayLike, width: int, height: int) -> ArrayLike:
    """Pixel (u, v) (..., 2) -> [-1, 1] with pixel centres: ``(u + 0.5) / W * 2 - 1`` (same for v/H)."""
    scale = uv.new_tensor([width, height]) if isinstance(uv, torch.Tensor) else np.array([width, height], float)
    return (uv + 0.5) / scale * 2.0 - 1.0


def delta_scale(deltas: ArrayLike, valid: ArrayLike, q: float = 95.0) -> np.ndarray:
    """Per-axis ``q``-th percentile of |delta| over valid entries of (M, H, 3) -> (3,).

    This is the dataset statistic that maps anchor-relative deltas to roughly [-1, 1]; an axis with
    no valid entries (or all-zero motion) gets 1.0 so division never blows up.
    """
    d = deltas.detach().cpu().numpy() if isinstance(deltas, torch.Tensor) else np.asarray(deltas)
    v = valid.detach().cpu().numpy() if isinstance(valid, torch.Tensor) else np.asarray(valid)
    sel = np.abs(d[v.astype(bool)].astype(np.float64))  # (K, 3)
    sel = sel[np.all(np.isfinite(sel), axis=-1)]
    if sel.shape[0] == 0:
        return np.ones(d.shape[-1], dtype=np.float64)
    s = np.percentile(sel, q, axis=0)
    return np.where(s > 0, s, 1.0)


class DeltaScale:
    """Holds a fitted per-axis ``delta_scale`` and converts between absolute uvz and targets."""

    def __init__(self, scale: ArrayLike) -> None:
        self.scale = np.asarray(scale, dtype=np.float64)

    @classmethod
    def fit(cls, deltas: ArrayLike, valid: ArrayLike, q: float = 95.0) -> "DeltaScale":
        return cls(delta_scale(deltas, valid, q))

    def to_targets(self, future_uvz: ArrayLike, current_uvz: ArrayLike) -> ArrayLike:
        return to_targets(future_uvz, current_uvz, self.scale)

    def from_targets(self, targets: ArrayLike, current_uvz: ArrayLike) -> ArrayLike:
        return from_targets(targets, current_uvz, self.scale)


def _scale_like(scale: ArrayLike, like: ArrayLike) -> ArrayLike:
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(np.asarray(scale) if not isinstance(scale, torch.Tensor) else scale).to(like)
    return np.asarray(scale, dtype=np.result_type(like, np.float32))


def to_targets(future_uvz: ArrayLike, current_uvz: ArrayLike, scale: ArrayLike) -> ArrayLike:
    """(future (..., H, 3) - current (..., 3)) / scale (3,): the anchor-relative scaled target space.

    u, v must already be normalised to [-1, 1] (see ``normalize_pixels``); z is in meters.
    """
    return (future_uvz - current_uvz[..., None, :]) / _scale_like(scale, future_uvz)


def from_targets(targets: ArrayLike, current_uvz: ArrayLike, scale: ArrayLike) -> ArrayLike:
    """Inverse of ``to_targets``: targets (..., H, 3) * scale + current (..., 3) -> absolute uvz."""
    return targets * _scale_like(scale, targets) + current_uvz[..., None, :]
