"""A small convolutional encoder trained from scratch whose feature map is sampled at each keypoint.

Why: on a CPU there are no pretrained vision weights, and a keypoint's future depends first on what it
sits on (gripper, object, table), which the VLM's coarse image tokens cannot say at 64 px. This is the
learnable counterpart of the frozen DINOv2 keypoint feature of the published recipe (`models/dino_features.py`):
same interface (image in [-1, 1], (u, v) in the padded square -> one feature per keypoint), but every
weight is trained with the expert. Four 3x3 conv blocks (two of them stride 2, then a dilated one for
context) with GroupNorm, so the feature at a keypoint sees about a quarter of a 64 px image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
    )


class PointEncoder(nn.Module):
    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        if channels % 8:
            raise ValueError(f"point encoder channels must be a multiple of 8 (GroupNorm), got {channels}")
        half = channels // 2
        self.net = nn.Sequential(
            _block(3, half, stride=2),
            _block(half, channels, stride=2),
            _block(channels, channels, dilation=2),
            _block(channels, channels, dilation=4),
        )
        self.dim = channels

    def forward(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """image (B,3,S,S) in [-1,1], uv (B,N,2) in [-1,1] of that image -> (B, N, channels)."""
        w = self.net[0][0].weight
        fmap = self.net(image.to(w.dtype))
        feat = F.grid_sample(fmap, uv.to(fmap.dtype)[:, :, None], mode="bilinear", align_corners=False)  # (B,C,N,1)
        return feat[..., 0].transpose(1, 2)
