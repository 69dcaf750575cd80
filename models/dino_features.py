"""Frozen DINOv2 patch features, bilinearly sampled at keypoints (the per-keypoint feature,
docs/method.md#model-query-representation).

Loaded by hub id or local dir via `AutoModel.from_pretrained`; the image is the model's [-1, 1] input,
re-normalised to ImageNet statistics and resized to `image_size` (518 in the recipe).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DinoUnavailable(OSError):
    """The DINOv2 weights could not be loaded; the message names the id or path and how to use a local copy."""


class DinoFeatures(nn.Module):
    def __init__(self, id_or_dir: str, image_size: int = 518) -> None:
        super().__init__()
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(id_or_dir)
        except (OSError, ValueError) as e:
            raise DinoUnavailable(
                f"could not load DINOv2 {id_or_dir!r} ({type(e).__name__}: {str(e).splitlines()[0]}). "
                "Download it and set Mu0Config.dino to the local directory, or set dino=None to disable the feature."
            ) from e
        self.model.requires_grad_(False)
        self.model.eval()
        self.image_size = image_size
        self.patch = self.model.config.patch_size
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def forward(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        """image (B,3,S,S) in [-1,1], uv (B,N,2) in [-1,1] of that image -> (B, N, C)."""
        x = F.interpolate(image.float(), size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        hidden = self.model(pixel_values=x.to(self.model.dtype)).last_hidden_state  # (B, 1 + h*w, C)
        side = self.image_size // self.patch
        grid = hidden[:, 1 : 1 + side * side].transpose(1, 2).reshape(x.shape[0], -1, side, side)
        feat = F.grid_sample(grid.float(), uv.float()[:, :, None], mode="bilinear", align_corners=False)  # (B,C,N,1)
        return feat[..., 0].transpose(1, 2)
