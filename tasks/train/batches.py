"""Raw Lance sample rows -> μ0 training/eval batches (target space: docs/method.md#model-target-space;
conventions: docs/method.md#loader-conventions).

`SampleToItem` turns one row from `storage/torch_loader.py` into numpy arrays; `collate` pads the
keypoint axis and stacks into the batch contract (`image`, `keypoints_uv`, `history`, `target_ctrl`,
... plus `future_uvz` / `current_uvz` for evaluation). Conventions:

- (u, v) normalised to [-1, 1] by the *stored* image size (`bspline.normalize_pixels`), z in meters.
  The image is resized with centred padding (`models/backbone.resize_with_pad`); `uv_image_scale`
  (B, 2) maps those (u, v) into the padded square (`uv * scale`).
- future: stored index 0 is t (the anchor), the horizon takes stored steps 1..H.
- history: stored index 0 is t and runs backward; the batch holds steps t-h..t-1 oldest -> newest,
  anchor-relative (history - current), not scaled.
- targets: control points fitted by `bspline.fit_control_points` (anchor row, λ=0.2, clip ±1.5) to
  (future - current) / delta_scale; a keypoint is a target only with >= D valid future steps.
Beyond the model's inputs, items carry `history_stored` / `history_valid` (the stored history before
any masking, for the constant-velocity baseline) and `future_uvz` / `current_uvz` (for metrics).
Augmentations (train only, seeded per item): history dropout (whole sample 0.5, per keypoint 0.3),
depth dropout 0.7, colour jitter 0.3, depth noise σ 0.01 m.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from pydantic import BaseModel, Field

from models.backbone import padded_uv_scale, resize_with_pad
from models.bspline import fit_control_points, normalize_pixels, to_targets
from models.mu0_config import Mu0Config
from tasks.train.stats import TraceStats


class BatchConfig(BaseModel, frozen=True):
    """Shapes and augmentation settings of the batches (the model preset fixes the shapes)."""

    image_size: int = Field(512, ge=16, description="S: images are resized with padding to S x S")
    history_len: int = Field(8, ge=0, description="h: history steps per keypoint")
    n_ctrl: int = Field(10, description="D: B-spline control points (4, 7 or 10)")
    horizon: int = Field(32, ge=1, description="H: future steps per keypoint")
    max_keypoints: int = Field(256, ge=1, description="keypoints sampled per sample at most")
    use_depth: bool = Field(False, description="produce the colormapped depth image input")
    fit_lambda: float = Field(0.2, ge=0, description="Tikhonov weight of the control-point fit")
    fit_clip: float = Field(1.5, gt=0, description="control points are clipped to +-clip")
    history_drop_all: float = Field(0.5, ge=0, le=1, description="p(history of the whole sample is masked)")
    history_drop_keypoint: float = Field(0.3, ge=0, le=1, description="p(one keypoint's history is masked)")
    depth_drop: float = Field(0.7, ge=0, le=1, description="p(depth input is dropped)")
    color_jitter: float = Field(0.3, ge=0, description="brightness/contrast/saturation jitter strength")
    depth_noise_m: float = Field(0.01, ge=0, description="sigma of Gaussian depth noise (m)")

    @classmethod
    def for_model(cls, model: Mu0Config, **overrides: Any) -> "BatchConfig":
        """The batches `model` is built for: its shapes are the model's, augmentation the defaults unless overridden."""
        shapes = dict(image_size=model.image_size, history_len=model.history_len, n_ctrl=model.n_ctrl,
                      horizon=model.horizon, max_keypoints=model.max_keypoints, use_depth=model.use_depth)
        return cls(**{**shapes, **overrides})


def jitter_colors(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1-s, 1+s] (ColorJitter-like)."""
    x = rgb.astype(np.float32)
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x = x * b
    x = (x - x.mean()) * c + x.mean()
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - gray[..., None]) * s + gray[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def depth_colormap(depth_m: np.ndarray, p1: float, p99: float) -> np.ndarray:
    """Log depth in [log p1, log p99] -> turbo RGB uint8, near = high end; unknown (<= 0) is black."""
    lo, hi = np.log(max(p1, 1e-3)), np.log(max(p99, p1 + 1e-3))
    known = depth_m > 0
    x = (hi - np.log(np.where(known, depth_m, 1.0))) / max(hi - lo, 1e-6)
    u8 = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~known] = 0
    return rgb


def pick_caption(raw: dict, rng: np.random.Generator) -> str:
    """A caption covering frame t, one of its three styles at random; else the instruction; else ""."""
    caps = raw.get("captions") or []
    if caps:
        c = caps[int(rng.integers(len(caps)))]
        styles = [c.get(f"instruction_{k}") for k in (1, 2, 3)]
        styles = [s for s in styles if s]
        if styles:
            return styles[int(rng.integers(len(styles)))]
    return raw.get("episode", {}).get("instruction") or ""


class SampleToItem:
    """Picklable transform for `LanceTraceDataset`: raw row -> dict of numpy arrays (one sample).

    `train` switches augmentation and random keypoint subsets on; evaluation picks keypoints with a
    fixed per-sample seed, so every method sees the same ones.
    """

    def __init__(self, cfg: BatchConfig, stats: TraceStats, train: bool, seed: int = 0, n_keypoints: int | None = None,
                 use_history: bool = True, use_depth: bool = True) -> None:
        self.cfg, self.stats, self.train, self.seed = cfg, stats, train, seed
        self.n_keypoints = n_keypoints or cfg.max_keypoints
        self.use_history, self.use_depth = use_history, use_depth

    def __call__(self, raw: dict, index: int, draw: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index, draw if self.train else 0])
        return sample_to_item(raw, self.cfg, self.stats, rng, self.train, self.n_keypoints, self.use_history, self.use_depth)


def _future_and_history(raw: dict, cfg: BatchConfig) -> tuple[np.ndarray, ...]:
    """Stored pixels -> normalised uvz: future (M, H, 3), fvalid, current (M, 3), history (M, h, 3), hvalid."""
    W, Hh = raw["episode"]["width"], raw["episode"]["height"]
    fut, fval = raw["future"], raw["future_valid"]
    M, L = fval.shape
    H, h = cfg.horizon, cfg.history_len
    steps = np.full((M, H, 3), np.nan, np.float32)
    sval = np.zeros((M, H), bool)
    n = min(H, L - 1)
    steps[:, :n], sval[:, :n] = fut[:, 1 : n + 1], fval[:, 1 : n + 1]
    cur = np.concatenate([raw["keypoints_uv"], fut[:, 0, 2:3]], axis=-1).astype(np.float64)
    hist_src, hval_src = raw["history"], raw["history_valid"]
    hist = np.full((M, h, 3), np.nan, np.float32)
    hval = np.zeros((M, h), bool)
    k = min(h, hist_src.shape[1] - 1)
    if k > 0:  # stored 1..k are t-1..t-k; reversed they run oldest -> newest and end at t-1
        hist[:, h - k :] = hist_src[:, 1 : k + 1][:, ::-1]
        hval[:, h - k :] = hval_src[:, 1 : k + 1][:, ::-1]

    def norm(x: np.ndarray) -> np.ndarray:
        return np.concatenate([normalize_pixels(x[..., :2].astype(np.float64), W, Hh), x[..., 2:3]], axis=-1)

    sval &= np.isfinite(steps).all(-1)
    hval &= np.isfinite(hist).all(-1)
    return norm(steps), sval, norm(cur), norm(hist), hval


def sample_to_item(raw: dict, cfg: BatchConfig, stats: TraceStats, rng: np.random.Generator, train: bool,
                   n_keypoints: int, use_history: bool = True, use_depth: bool = True) -> dict[str, Any]:
    """One sample; `use_history` / `use_depth` False hide those inputs (the headline protocol)."""
    future, fvalid, current, history, hvalid = _future_and_history(raw, cfg)
    usable = np.flatnonzero(fvalid.sum(1) >= cfg.n_ctrl)
    if usable.size == 0:  # fall back to the keypoints with the most valid steps (rare: short clips)
        usable = np.argsort(-fvalid.sum(1), kind="stable")[: max(1, min(n_keypoints, fvalid.shape[0]))]
    pick = np.sort(rng.choice(usable, size=min(n_keypoints, usable.size), replace=False))
    future, fvalid, current = future[pick], fvalid[pick], current[pick]
    history, hvalid = history[pick], hvalid[pick]
    N = pick.size

    hist_rel = np.where(hvalid[..., None], history - current[:, None, :], 0.0)
    hmask = hvalid.copy() if use_history else np.zeros_like(hvalid)
    if train and cfg.history_len > 0:
        if rng.random() < cfg.history_drop_all:
            hmask[:] = False
        else:
            hmask &= (rng.random(N) >= cfg.history_drop_keypoint)[:, None]
    hist_rel = np.where(hmask[..., None], hist_rel, 0.0)

    scale = np.asarray(stats.delta_scale, np.float64)
    targets = to_targets(np.where(fvalid[..., None], future, 0.0), current, scale)
    ctrl, ok = fit_control_points(torch.from_numpy(targets), torch.from_numpy(fvalid), n_ctrl=cfg.n_ctrl,
                                  lam=cfg.fit_lambda, clip=cfg.fit_clip)

    image = raw["image"]
    if image is None:
        W, Hh = raw["episode"]["width"] or cfg.image_size, raw["episode"]["height"] or cfg.image_size
        image = np.zeros((Hh, W, 3), np.uint8)
    if train and cfg.color_jitter > 0:
        image = jitter_colors(image, cfg.color_jitter, rng)
    item: dict[str, Any] = {
        "image": resize_with_pad(image, cfg.image_size).numpy(),
        "uv_image_scale": np.asarray(padded_uv_scale(image.shape[0], image.shape[1], cfg.image_size), np.float32),
        "text": pick_caption(raw, rng),
        "keypoints_uv": current[:, :2].astype(np.float32),
        "history": hist_rel.astype(np.float32),
        "history_mask": hmask,
        "history_stored": np.where(hvalid[..., None], history - current[:, None, :], 0.0).astype(np.float32),
        "history_valid": hvalid,
        "target_ctrl": ctrl.numpy().astype(np.float32),
        "target_valid": ok.numpy(),
        "future_valid": fvalid,
        "cluster_id": raw["cluster_id"][pick].astype(np.int64),
        "future_uvz": np.where(fvalid[..., None], future, 0.0).astype(np.float32),
        "current_uvz": current.astype(np.float32),
        "episode_id": raw["episode_id"],
        "frame": raw["frame"],
    }
    depth = raw.get("depth")
    has_depth = cfg.use_depth and use_depth and depth is not None and not (train and rng.random() < cfg.depth_drop)
    z = current[:, 2].copy()
    if has_depth:
        if train and cfg.depth_noise_m > 0:
            depth = np.where(depth > 0, depth + rng.normal(0, cfg.depth_noise_m, depth.shape).astype(np.float32), 0.0)
            z = z + rng.normal(0, cfg.depth_noise_m, z.shape)
        cm = depth_colormap(depth, stats.depth_p1, stats.depth_p99)
        item["depth_image"] = resize_with_pad(cm, cfg.image_size).numpy()
    elif cfg.use_depth:
        item["depth_image"] = np.full((3, cfg.image_size, cfg.image_size), -1.0, np.float32)
    item["has_depth"] = bool(has_depth)
    item["keypoints_z"] = np.where(np.isfinite(z) & has_depth, z, 0.0).astype(np.float32)
    return item


_PAD_KEYS = {
    "keypoints_uv": 0.0, "keypoints_z": 0.0, "history": 0.0, "history_mask": False, "history_stored": 0.0, "history_valid": False,
    "target_ctrl": 0.0, "target_valid": False, "future_valid": False, "cluster_id": -1, "future_uvz": 0.0,
    "current_uvz": 0.0,
}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items, padding the keypoint axis to the batch's largest N (`keypoint_mask` marks real ones)."""
    N = max(len(it["keypoints_uv"]) for it in items)
    batch: dict[str, Any] = {}
    for key, fill in _PAD_KEYS.items():
        arrs = []
        for it in items:
            a = it[key]
            pad = np.full((N - a.shape[0],) + a.shape[1:], fill, dtype=a.dtype)
            arrs.append(np.concatenate([a, pad]))
        batch[key] = torch.from_numpy(np.stack(arrs))
    batch["keypoint_mask"] = torch.from_numpy(
        np.stack([np.arange(N) < len(it["keypoints_uv"]) for it in items])
    )
    batch["image"] = torch.from_numpy(np.stack([it["image"] for it in items]))
    batch["uv_image_scale"] = torch.from_numpy(np.stack([it["uv_image_scale"] for it in items]))
    if "depth_image" in items[0]:
        batch["depth_image"] = torch.from_numpy(np.stack([it["depth_image"] for it in items]))
    batch["has_depth"] = torch.tensor([it["has_depth"] for it in items], dtype=torch.bool)
    batch["text"] = [it["text"] for it in items]
    batch["episode_id"] = [it["episode_id"] for it in items]
    batch["frame"] = torch.tensor([it["frame"] for it in items], dtype=torch.int64)
    return batch


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Tensors moved to `device` (non-blocking); lists of strings stay as they are."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
