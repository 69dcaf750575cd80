"""DINOv2 patch features of whole frames, for the `dino` keypoint backend (docs/method.md#stage-2-keypoint-proposal).

`models/dino_features.py` samples features at keypoints inside the μ0 model; this module gives the full
patch grid of every k-th frame. Loaded by hub id or local directory (save_pretrained layout) through
`Dinov2Model.from_pretrained`. Each frame is resized as a whole to `input_size`² (the published pipeline:
224×224, a 16×16 grid; no crop, so patch cell (i, j) covers rows i·H/h … (i+1)·H/h of the frame). Pixel
statistics come from the saved image processor when there is one, else ImageNet's. A loaded model is
cached per process; on CUDA it runs in bfloat16.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from models.device import DeviceUnavailable, resolve_device
from models.loading import download_hint, first_line, pretrained_source
from models.dino_features import DinoUnavailable

_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14,
             image_size=56)
SETTING = "keypoints.dino.model"  # the option that points the backend at a local copy


class DinoModelUnavailable(DinoUnavailable):
    """The DINOv2 weights for keypoint selection could not be loaded; the message names the setting to set."""


class PatchFeatures(NamedTuple):
    frame_ids: np.ndarray  # (T',) int64: the frames the features belong to
    features: np.ndarray  # (T', h, w, C) float32, L2-normalised per patch
    cell_px: tuple[float, float]  # (height, width) of one patch cell in frame pixels


@dataclass(frozen=True)
class DinoPatches:
    """A loaded DINOv2 with its input statistics; `patch_features` maps frames to a normalised patch grid."""

    model: torch.nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    dtype: torch.dtype
    name: str

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    @torch.inference_mode()
    def patch_features(
        self, frames: np.ndarray, every_k: int = 1, input_size: int = 224, batch_size: int = 8
    ) -> PatchFeatures:
        """frames (T,H,W,3) uint8 RGB -> features of frames 0, k, 2k, … on an (input_size/patch)² grid."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) RGB, got shape {frames.shape}")
        p = self.patch_size
        if input_size % p:
            raise ValueError(f"input_size {input_size} is not a multiple of the patch size {p}")
        T, H, W, _ = frames.shape
        ids = np.arange(0, T, max(int(every_k), 1), dtype=np.int64)
        side = input_size // p
        out = np.empty((len(ids), side, side, self.model.config.hidden_size), np.float32)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)  # CLS (+ registers)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            x = torch.from_numpy(np.ascontiguousarray(frames[chunk])).to(self.device).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
            x = (x - mean) / std
            hidden = self.model(pixel_values=x.to(self.dtype)).last_hidden_state  # (B, skip + h*w, C), layer-normed
            grid = hidden[:, skip : skip + side * side].float().reshape(len(chunk), side, side, -1)
            out[start : start + len(chunk)] = F.normalize(grid, dim=-1).cpu().numpy()
        return PatchFeatures(ids, out, (H / side, W / side))


def _pixel_stats(source: str) -> tuple[tuple, tuple]:
    """image_mean / image_std of the saved image processor, else ImageNet's (the DINOv2 training statistics)."""
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(source, backend="pil")
    except (OSError, ValueError):
        return _IMAGENET_MEAN, _IMAGENET_STD
    mean, std = getattr(proc, "image_mean", None), getattr(proc, "image_std", None)
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return _IMAGENET_MEAN, _IMAGENET_STD
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


@functools.lru_cache(maxsize=2)
def load_dinov2(id_or_dir: str, device: str = "auto") -> DinoPatches:
    """Dinov2Model by hub id or local save_pretrained directory, cached per process."""
    from transformers import Dinov2Model

    source, unusable = pretrained_source(id_or_dir)
    if unusable:
        raise DinoModelUnavailable(
            f"DINOv2 model directory {source!r} {unusable}; set {SETTING} to a save_pretrained directory holding "
            "config.json and model.safetensors (preprocessor_config.json optional), or to a hub id"
        )
    try:
        model = Dinov2Model.from_pretrained(source, use_safetensors=True)
    except (OSError, ValueError) as exc:
        hint = download_hint(id_or_dir, f"set {SETTING}=DIR")
        raise DinoModelUnavailable(f"cannot load DINOv2 {id_or_dir!r}: {first_line(exc)}. {hint}") from exc
    mean, std = _pixel_stats(source)
    try:
        dev = resolve_device(device)
    except DeviceUnavailable as exc:
        raise DinoModelUnavailable(f"DINOv2 {exc}") from None
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = model.to(dev, dtype).eval()
    return DinoPatches(model=model, mean=mean, std=std, device=dev, dtype=dtype, name=id_or_dir)


def save_random_dinov2(out_dir: str | Path, seed: int = 0, with_processor: bool = True, **config) -> Path:
    """Write a tiny random Dinov2Model (hidden 32, 2 layers, 2 heads, patch 14) in the save_pretrained layout.

    `with_processor=False` leaves out preprocessor_config.json (the loader then uses ImageNet statistics);
    `config` overrides Dinov2Config fields.
    """
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    model = Dinov2Model(Dinov2Config(**{**_TINY, **config})).eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    if with_processor:
        side = model.config.image_size
        BitImageProcessorPil(
            do_resize=True, size={"shortest_edge": side}, do_center_crop=True,
            crop_size={"height": side, "width": side}, do_rescale=True, do_normalize=True, image_mean=list(_IMAGENET_MEAN), image_std=list(_IMAGENET_STD),
        ).save_pretrained(out_dir)
    return out_dir
