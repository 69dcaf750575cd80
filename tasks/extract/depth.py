"""Stage 1a: metric depth. `given` depth is read by decode; `depth-anything` predicts it.

Predicted "metric" depth is often off by a scale (users of Depth Anything, VGGT and SpatialTracker report
it), so where the episode gives some depth (a few frames of depth.npy, or a sparse map) the prediction is
median-scaled to it, and `depth_scale_ratio` = median(predicted / given) records how metric the model was
(NaN when nothing was given). Either backend leaves `ep.K` set (tasks/extract/intrinsics.py).
"""

from __future__ import annotations

import numpy as np

from tasks.config import DepthConfig, IngestConfig
from tasks.errors import ConfigurationError
from tasks.extract.intrinsics import ensure_intrinsics
from tasks.types import Episode

_MAX_RATIO_SAMPLES = 2_000_000  # a strided subset is as good for a median and keeps long episodes cheap


def median_depth_ratio(predicted: np.ndarray, given: np.ndarray | None, min_px: int = 1) -> float:
    """median(predicted / given) over pixels where both are valid (> 0, finite); NaN under `min_px` pairs."""
    if given is None:
        return float("nan")
    ok = np.isfinite(given) & (given > 0) & np.isfinite(predicted) & (predicted > 0)
    n = int(np.count_nonzero(ok))
    if n < min_px:
        return float("nan")
    ratio = predicted[ok] / given[ok]
    if n > _MAX_RATIO_SAMPLES:
        ratio = ratio[:: n // _MAX_RATIO_SAMPLES]
    return float(np.median(ratio))


def predict_depth(frames: np.ndarray, cfg: DepthConfig) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T,H,W) float32 meters with Depth Anything; missing weights are a configuration error."""
    from models.depth_anything import DepthModelUnavailable, NotMetricDepth, load_depth_anything

    try:
        model = load_depth_anything(cfg.model, cfg.device)
    except (DepthModelUnavailable, NotMetricDepth) as exc:
        raise ConfigurationError(str(exc)) from exc
    return model.predict(frames, batch_size=cfg.batch_size, input_size=cfg.input_size)


def estimate_depth(ep: Episode, cfg: IngestConfig) -> Episode:
    if cfg.depth.backend == "given":
        return ensure_intrinsics(ep, cfg.depth)
    predicted = predict_depth(ep.frames, cfg.depth)
    ratio = median_depth_ratio(predicted, ep.depth, cfg.depth.min_given_px)
    if cfg.depth.scale_to_given and np.isfinite(ratio) and ratio > 0:
        predicted /= np.float32(ratio)
    predicted[~(predicted > 0)] = np.nan  # unknown, as in given depth
    ep = ep.replace(depth=predicted, clean_depth=None, depth_source="depth-anything", depth_scale_ratio=ratio)
    return ensure_intrinsics(ep, cfg.depth)
