"""Flow matching on B-spline control points and the auxiliary losses (docs/method.md#model-objective).

Convention (π0/SmolVLA): x_t = t eps + (1 - t) P, velocity v = eps - P, so t=1 is noise and t=0 data;
sampling integrates dx/dt = v from t=1 down to 0 with Euler steps.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def sample_time(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """t ~ Beta(1.5, 1) * 0.999 + 0.001 (B,). Beta(a, 1) has CDF x^a, so x = U^(1/a) is exact."""
    u = torch.rand(batch, generator=generator, device=device)
    return u.pow(1.0 / 1.5) * 0.999 + 0.001


def interpolate(target: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, v_target) for clean target P (B, ...), noise eps and time t (B,)."""
    tt = t.view(-1, *([1] * (target.dim() - 1))).to(target.dtype)
    return tt * noise + (1 - tt) * target, noise - target


def noise_like(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise of `shape` on `device`, drawn on the generator's device (so a seeded CPU
    generator gives the same draws whatever device the model is on)."""
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)


def noisy_pair(target: torch.Tensor, generator: torch.Generator | None = None):
    """(x_t, v_target, t) for one training step: noise and Beta time drawn on the generator's device."""
    gdev = generator.device if generator is not None else target.device
    noise = noise_like(target.shape, generator, target.device)
    t = sample_time(target.shape[0], generator, gdev).to(target.device)
    x_t, v_target = interpolate(target, noise, t)
    return x_t, v_target, t


def chunk_loss(v_pred: torch.Tensor, v_target: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """MSE over (B, chunk, A) action velocities, counting only the steps `action_mask` (B, chunk) keeps."""
    w = action_mask.float()[..., None].expand_as(v_target)
    return ((v_pred.float() - v_target).pow(2) * w).sum() / w.sum().clamp(min=1.0)


def flow_loss(v_pred: torch.Tensor, v_target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE over (D, 3) per keypoint, averaged over keypoints with `valid` (B, N) True (0 if none)."""
    per_kp = (v_pred.float() - v_target.float()).pow(2).mean(dim=(-1, -2))
    w = valid.float()
    return (per_kp * w).sum() / w.sum().clamp(min=1.0)


def done_loss(logits: torch.Tensor, future_valid: torch.Tensor, keypoint_mask: torch.Tensor) -> torch.Tensor:
    """BCE of the done head (B, N, H) against per-step validity, over real keypoints."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), future_valid.float(), reduction="none").mean(-1)
    w = keypoint_mask.float()
    return (bce * w).sum() / w.sum().clamp(min=1.0)


def clean_estimate(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The predicted clean control points x_t - t v (exact when v is the true velocity)."""
    return x_t - t.view(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype) * v


def rigidity_loss(ctrl: torch.Tensor, cluster_id: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Variance across control points of pairwise distances between keypoints of one entity.

    ctrl (B, N, D, 3) anchor-relative control points; cluster_id (B, N) (-1 = none); valid (B, N).
    Distances are between the keypoints' control points at the same index, so an entity whose
    keypoints move together gives a constant (zero) distance and no penalty. Mean over same-entity
    pairs (i < j); 0 when there are none.
    """
    c = ctrl.float()
    diff = c[:, :, None] - c[:, None, :]
    d = (diff.pow(2).sum(-1) + 1e-12).sqrt()  # (B, N, N, D); the epsilon keeps the gradient finite at 0
    var = d.var(dim=-1, unbiased=False)  # (B, N, N)
    same = (cluster_id[:, :, None] == cluster_id[:, None, :]) & (cluster_id[:, :, None] >= 0)
    pair = same & valid[:, :, None] & valid[:, None, :]
    pair = torch.triu(pair, diagonal=1)
    n = pair.sum()
    return (var * pair).sum() / n.clamp(min=1)


def euler_sample(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    num_steps: int,
) -> torch.Tensor:
    """Integrate from x_1 = noise at t=1 to t=0 with `num_steps` Euler steps of velocity(x_t, t (B,))."""
    x = noise
    dt = 1.0 / num_steps
    for i in range(num_steps):
        t = torch.full((x.shape[0],), 1.0 - i * dt, device=x.device)
        x = x - dt * velocity(x, t).to(x.dtype)
    return x
