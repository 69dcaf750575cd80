"""Flow-matching pieces on hand cases: time law, interpolation, Euler, done BCE, rigidity."""

import math

import torch

from models.flow_matching import done_loss, euler_sample, interpolate, rigidity_loss, sample_time


def test_time_follows_beta_1p5_1_in_range():
    t = sample_time(200_000, torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    # Beta(1.5, 1): mean 0.6, P(x < 0.5) = 0.5^1.5
    assert abs(t.mean().item() - (0.6 * 0.999 + 0.001)) < 0.003
    assert abs((t < 0.5 * 0.999 + 0.001).float().mean().item() - 0.5**1.5) < 0.003


def test_euler_with_the_true_velocity_recovers_the_target():
    P = torch.randn(2, 3, 10, 3)
    eps = torch.randn_like(P)
    x_t, v = interpolate(P, eps, torch.tensor([0.3, 0.9]))
    assert torch.allclose(x_t[0], 0.3 * eps[0] + 0.7 * P[0]) and torch.allclose(v, eps - P)
    out = euler_sample(lambda x, t: eps - P, eps, num_steps=4)
    assert torch.allclose(out, P, atol=1e-5)


def test_done_loss_hand_case():
    logits = torch.tensor([[[3.0, -3.0]]])
    target = torch.tensor([[[True, False]]])
    expected = -math.log(1 / (1 + math.exp(-3.0)))
    assert abs(done_loss(logits, target, torch.tensor([[True]])).item() - expected) < 1e-6


def test_rigidity_zero_for_rigid_motion_positive_otherwise():
    D = 10
    path = torch.linspace(0, 1, D)[:, None] * torch.tensor([0.5, -0.2, 0.1])  # shared displacement
    rigid = path.expand(3, D, 3)[None].clone()  # 3 keypoints of one entity move together
    cid = torch.tensor([[0, 0, 0]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    assert rigidity_loss(rigid, cid, valid).item() < 1e-10
    bent = rigid.clone()
    bent[0, 2] = path * torch.tensor([-1.0, 1.0, 1.0])  # one keypoint goes the other way in u
    assert rigidity_loss(bent, cid, valid).item() > 1e-3
    # different entities, or no entity, are not constrained
    assert rigidity_loss(bent, torch.tensor([[0, 0, 1]]), valid).item() < 1e-10
    assert rigidity_loss(bent, torch.tensor([[-1, -1, -1]]), valid).item() == 0.0
