"""The point encoder: a feature per keypoint that depends on the pixels under it and learns with the model."""

from __future__ import annotations

import torch

from models.mu0 import Mu0
from models.mu0_batch import random_batch
from models.mu0_config import get_model_preset
from models.point_encoder import PointEncoder


def test_features_are_sampled_where_the_keypoints_are():
    enc = PointEncoder(32).eval()
    image = -torch.ones(1, 3, 128, 128)
    image[:, :, 8:24, 8:24] = 1.0  # a white square in the top-left corner
    uv = torch.tensor([[[-0.75, -0.75], [0.25, 0.3], [0.3, 0.2]]])  # on it; two points in the flat middle
    f = enc(image, uv)
    assert f.shape == (1, 3, 32)
    assert torch.allclose(f[0, 1], f[0, 2], atol=1e-5)  # both see only the flat background
    assert (f[0, 0] - f[0, 1]).abs().max() > 1e-2


def test_mu0_tiny_trains_its_point_encoder_and_the_ablation_has_none():
    cfg = get_model_preset("mu0-tiny")
    assert cfg.point_encoder_channels == 64 and cfg.dino is None
    model = Mu0(cfg)
    model.loss(random_batch(cfg, 2, 5))["loss"].backward()
    grads = [p.grad for p in model.point_encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    ablation = Mu0(get_model_preset("mu0-tiny", point_encoder_channels=0))
    assert ablation.point_encoder is None and ablation.tokens.feature_fuse is None
