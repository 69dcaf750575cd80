"""How the policy queries the frozen μ0: a uniform keypoint grid, no history, no depth, one Euler step.

`grid_uv` places G x G keypoints at cell centres of the (unpadded) image in μ0's (u, v) in [-1, 1];
`mu0_batch` turns a policy batch into μ0's batch contract (models/mu0_batch.py) with history zeroed
and masked; `pool_grid` 2x2-averages per-keypoint tokens on the grid (20x20 -> 100 tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_uv(grid: int) -> torch.Tensor:
    """(G*G, 2) (u, v) in [-1, 1], row-major (v rows, u columns), at cell centres."""
    c = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid * 2 - 1
    v, u = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([u.flatten(), v.flatten()], dim=-1)


def mu0_batch(image: torch.Tensor, text: list[str], uv: torch.Tensor, history_len: int,
              uv_image_scale: torch.Tensor | None = None) -> dict:
    """μ0's inputs for B images and G*G grid keypoints: every keypoint real, history zeroed and masked, no depth."""
    B, N = image.shape[0], uv.shape[0]
    dev = image.device
    batch = {
        "image": image,
        "text": list(text),
        "keypoints_uv": uv.to(dev)[None].expand(B, N, 2),
        "keypoint_mask": torch.ones(B, N, dtype=torch.bool, device=dev),
        "history": torch.zeros(B, N, history_len, 3, device=dev),
        "history_mask": torch.zeros(B, N, history_len, dtype=torch.bool, device=dev),
    }
    if uv_image_scale is not None:
        batch["uv_image_scale"] = uv_image_scale
    return batch


def pool_grid(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, G*G, D) row-major grid tokens -> (B, (G/2)^2, D) 2x2 averages."""
    B, N, D = tokens.shape
    x = tokens.reshape(B, grid, grid, D).permute(0, 3, 1, 2)
    return F.avg_pool2d(x, 2).flatten(2).transpose(1, 2)
