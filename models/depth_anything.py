"""Depth Anything (V2, metric) through transformers: load by hub id or local directory, predict in batches.

The image processor is the PIL one (`backend="pil"`): transformers 5's default "fast" processors need
torchvision, which is not installed beside torch here. A loaded model is cached per process, so a Ray
worker that runs many episodes loads the weights once. On CUDA the model runs in bfloat16.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.device import DeviceUnavailable, resolve_device
from models.loading import download_hint, first_line, pretrained_source

# Released shapes of the Depth-Anything-V2 metric checkpoints (config.json of the -hf repos), and a tiny one
# for tests. Random weights of a real shape cost the same time as real weights (benchmarks).
_SHAPES = {
    "tiny": dict(
        backbone=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=56),
        out_features=["stage1", "stage2"], reassemble_hidden_size=32, reassemble_factors=[2, 1],
        neck_hidden_sizes=[16, 32], fusion_hidden_size=16, head_hidden_size=8, image_size=56,
        max_depth=4, init_std=0.15,  # default init predicts a constant; this gives 1.5-2 m that follows the image
    ),
    "small": dict(
        backbone=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, image_size=518),
        out_features=["stage3", "stage6", "stage9", "stage12"], reassemble_hidden_size=384,
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
        head_hidden_size=32, image_size=518, max_depth=20, init_std=None,
    ),
    "large": dict(
        backbone=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, image_size=518),
        out_features=["stage5", "stage12", "stage18", "stage24"], reassemble_hidden_size=1024,
        reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256,
        head_hidden_size=32, image_size=518, max_depth=20, init_std=None,
    ),
}
_IMAGENET_MEAN, _IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class DepthModelUnavailable(OSError):
    """The weights could not be loaded; the message names what was tried and how to point at a local copy."""


class NotMetricDepth(ValueError):
    """The checkpoint predicts relative (affine-invariant) depth, which cannot be stored as meters."""


@dataclass(frozen=True)
class DepthAnything:
    """A loaded metric depth model with its image processor; `predict` maps RGB frames to meters."""

    model: torch.nn.Module
    processor: object
    device: torch.device
    dtype: torch.dtype
    name: str

    @torch.inference_mode()
    def predict(self, frames: np.ndarray, batch_size: int = 8, input_size: int | None = None) -> np.ndarray:
        """frames (T,H,W,3) uint8 RGB -> depth (T,H,W) float32 meters at the frames' resolution."""
        T, H, W, _ = frames.shape
        size = {"height": input_size, "width": input_size} if input_size else None
        out = np.empty((T, H, W), np.float32)
        for start in range(0, T, batch_size):
            batch = list(frames[start : start + batch_size])
            kwargs = {"size": size} if size else {}
            pixels = self.processor(images=batch, return_tensors="pt", **kwargs)["pixel_values"]
            pred = self.model(pixel_values=pixels.to(self.device, self.dtype)).predicted_depth  # (B, h, w)
            # The processor resizes the whole frame (no padding, aspect kept), so resizing back is exact framing.
            pred = F.interpolate(pred[:, None].float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
            out[start : start + len(batch)] = pred.cpu().numpy()
        return out


@functools.lru_cache(maxsize=2)
def load_depth_anything(id_or_dir: str, device: str = "auto") -> DepthAnything:
    """Model and processor by hub id or local directory (save_pretrained layout), cached per process."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    source, unusable = pretrained_source(id_or_dir)
    if unusable:
        raise DepthModelUnavailable(
            f"depth model directory {source!r} {unusable}; point `--depth-model DIR` (sets depth.model) at a "
            "save_pretrained directory holding config.json, model.safetensors and preprocessor_config.json, "
            "or give a hub id"
        )
    try:
        model = AutoModelForDepthEstimation.from_pretrained(source, use_safetensors=True)
        processor = AutoImageProcessor.from_pretrained(source, backend="pil")
    except (OSError, ValueError) as exc:
        hint = download_hint(id_or_dir, "point at the copy with `--depth-model DIR` (sets depth.model)")
        raise DepthModelUnavailable(f"cannot load depth model {id_or_dir!r}: {first_line(exc)}. {hint}") from exc
    kind = getattr(model.config, "depth_estimation_type", "metric")
    if kind != "metric":
        raise NotMetricDepth(
            f"depth model {id_or_dir!r} predicts {kind} depth, not meters; use a metric checkpoint such as "
            "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf (or -Outdoor-) instead"
        )
    try:
        dev = resolve_device(device)
    except DeviceUnavailable as exc:
        raise DepthModelUnavailable(f"depth {exc}") from None
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model = model.to(dev, dtype).eval()
    return DepthAnything(model=model, processor=processor, device=dev, dtype=dtype, name=id_or_dir)


def random_depth_anything(shape: str = "tiny", seed: int = 0):
    """(model, processor) of a released shape ("tiny", "small", "large") with random weights: tests, benchmarks.

    Shapes follow the metric Depth-Anything-V2 -hf configs (indoor: max_depth 20 m); random weights of a real
    shape cost the same time as trained ones. The tiny one (75k parameters) predicts 1.5-2 m.
    """
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    spec = _SHAPES[shape]
    backbone = Dinov2Config(
        **spec["backbone"], patch_size=14, out_features=spec["out_features"], reshape_hidden_states=False
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=spec["reassemble_hidden_size"],
        reassemble_factors=spec["reassemble_factors"], neck_hidden_sizes=spec["neck_hidden_sizes"],
        fusion_hidden_size=spec["fusion_hidden_size"], head_hidden_size=spec["head_hidden_size"],
        depth_estimation_type="metric", max_depth=spec["max_depth"],
    )
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config).eval()
    if spec["init_std"]:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, spec["init_std"])
    side = spec["image_size"]
    processor = DPTImageProcessorPil(
        do_resize=True, size={"height": side, "width": side}, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, do_rescale=True, do_normalize=True, image_mean=_IMAGENET_MEAN, image_std=_IMAGENET_STD,
    )
    return model, processor


def save_random_depth_anything(out_dir: str | Path, shape: str = "tiny", **kwargs) -> Path:
    """Write a random model of `shape` with its processor in the save_pretrained layout a hub repo has."""
    model, processor = random_depth_anything(shape, **kwargs)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
