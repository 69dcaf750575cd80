"""The batch contract between the trace loader and `Mu0`, a checker for it, and a random batch for benchmarks.

Keys (B samples, N keypoints, h history steps, D control points, H horizon, S image side):

    image          float32 (B,3,S,S) in [-1,1], resize-with-padded
    depth_image    float32 (B,3,S,S) turbo-colormapped log depth in [-1,1]   (optional)
    has_depth      bool    (B,)                                              (optional)
    text           list[str] (B,) captions ("" allowed)
    keypoints_uv   float32 (B,N,2) current (u,v) in [-1,1]
    keypoints_z    float32 (B,N) current depth, m (0 unknown)
    keypoint_mask  bool    (B,N)
    history        float32 (B,N,h,3) anchor-relative, oldest -> newest
    history_mask   bool    (B,N,h)
    target_ctrl    float32 (B,N,D,3) scaled anchor-relative control points (clipped +-1.5)
    target_valid   bool    (B,N)
    future_valid   bool    (B,N,H)
    cluster_id     int64   (B,N) (-1 = none)
    uv_image_scale float32 (B,2) uv -> padded-square uv factors for DINO sampling (optional; 1 if absent)
"""

from __future__ import annotations

import torch

from models.mu0_config import Mu0Config


def expected_shapes(cfg: Mu0Config, B: int, N: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    S, h, D, H = cfg.image_size, cfg.history_len, cfg.n_ctrl, cfg.horizon
    return {
        "image": ((B, 3, S, S), torch.float32),
        "keypoints_uv": ((B, N, 2), torch.float32),
        "keypoints_z": ((B, N), torch.float32),
        "keypoint_mask": ((B, N), torch.bool),
        "history": ((B, N, h, 3), torch.float32),
        "history_mask": ((B, N, h), torch.bool),
        "target_ctrl": ((B, N, D, 3), torch.float32),
        "target_valid": ((B, N), torch.bool),
        "future_valid": ((B, N, H), torch.bool),
        "cluster_id": ((B, N), torch.int64),
    }


def check_batch(batch: dict, cfg: Mu0Config) -> None:
    """Raise ValueError naming every key whose presence, shape or dtype breaks the contract."""
    if "keypoint_mask" not in batch:
        raise ValueError("batch has no 'keypoint_mask'")
    B, N = batch["keypoint_mask"].shape
    problems = []
    for key, (shape, dtype) in expected_shapes(cfg, B, N).items():
        val = batch.get(key)
        if val is None:
            problems.append(f"{key}: missing")
        elif tuple(val.shape) != shape or val.dtype != dtype:
            problems.append(f"{key}: got {tuple(val.shape)} {val.dtype}, want {shape} {dtype}")
    if len(batch.get("text", [])) != B:
        problems.append(f"text: want a list of {B} strings")
    if "depth_image" in batch and tuple(batch["depth_image"].shape) != (B, 3, cfg.image_size, cfg.image_size):
        problems.append(f"depth_image: got {tuple(batch['depth_image'].shape)}")
    if N > cfg.max_keypoints:
        problems.append(f"N={N} keypoints exceeds max_keypoints={cfg.max_keypoints}")
    if problems:
        raise ValueError("batch does not follow the μ0 contract: " + "; ".join(problems))


def random_batch(
    cfg: Mu0Config, batch_size: int, n_keypoints: int, seed: int = 0, depth: bool = False, device="cpu"
) -> dict:
    """A contract-conforming batch of random values (benchmarks, smoke tests); last keypoint is padding."""
    g = torch.Generator().manual_seed(seed)
    B, N, S = batch_size, n_keypoints, cfg.image_size
    kp = torch.ones(B, N, dtype=torch.bool)
    kp[:, -1] = N == 1
    batch = {
        "image": torch.rand(B, 3, S, S, generator=g) * 2 - 1,
        "text": ["pick up the red block and place it in the bin"] * (B - 1) + [""],
        "keypoints_uv": torch.rand(B, N, 2, generator=g) * 2 - 1,
        "keypoints_z": torch.rand(B, N, generator=g) + 0.5,
        "keypoint_mask": kp,
        "history": torch.randn(B, N, cfg.history_len, 3, generator=g) * 0.05,
        "history_mask": torch.rand(B, N, cfg.history_len, generator=g) > 0.2,
        "target_ctrl": (torch.randn(B, N, cfg.n_ctrl, 3, generator=g) * 0.5).clamp(-1.5, 1.5),
        "target_valid": kp.clone(),
        "future_valid": torch.ones(B, N, cfg.horizon, dtype=torch.bool),
        "cluster_id": torch.randint(-1, 4, (B, N), generator=g),
    }
    if depth:
        batch["depth_image"] = torch.rand(B, 3, S, S, generator=g) * 2 - 1
        batch["has_depth"] = torch.ones(B, dtype=torch.bool)
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
