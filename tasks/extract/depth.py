"""Stage 1a: metric depth. `given` depth is read by decode; `depth-anything` predicts it.

Predicted "metric" depth is often off by a scale (users of Depth Anything, VGGT and SpatialTracker report
it), so where the episode gives some depth (a few frames of depth.npy, or a sparse map) the prediction is
median-scaled to it, and `depth_scale_ratio` = median(predicted / given) records how metric the model was
(NaN when nothing was given). Either backend leaves `ep.K` set (tasks/extract/intrinsics.py).
"""

from __future__ import annotations

import numpy as np

from tasks.config import DepthConfig, IngestConfig
from tasks.errors import ConfigurationError, EpisodeInputError
from tasks.extract.intrinsics import ensure_intrinsics
from tasks.extract.spill import blocks, empty_like_episode, release
from tasks.stage import Resources, Stage
from tasks.types import Episode, EpisodeSource

MAX_INVALID_DEPTH_FRACTION = 0.5  # given depth (overall, or any one frame) with more unknown pixels than this is refused
MAX_CORRUPT_DEPTH_FRACTION = 0.01  # a given frame with more +-inf or negative pixels than this is refused
_MAX_RATIO_SAMPLES = 2_000_000  # a strided subset is as good for a median and keeps long episodes cheap


def median_depth_ratio(predicted: np.ndarray, given: np.ndarray | None, min_px: int = 1) -> float:
    """median(predicted / given) over pixels where both are valid (> 0, finite); NaN under `min_px` pairs.

    Read a block of frames at a time (two passes: count, then every step-th pair in pixel order), so a long
    episode's depth is never held twice.
    """
    if given is None:
        return float("nan")

    def pairs(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        p, g = np.asarray(predicted[lo:hi]), np.asarray(given[lo:hi])
        ok = np.isfinite(g) & (g > 0) & np.isfinite(p) & (p > 0)
        return p[ok], g[ok]

    counts = []
    for lo, hi in blocks(len(predicted)):
        counts.append(len(pairs(lo, hi)[0]))
        release(predicted, given)
    n = sum(counts)
    if n < min_px:
        return float("nan")
    step = n // _MAX_RATIO_SAMPLES if n > _MAX_RATIO_SAMPLES else 1
    ratios, start = [], 0
    for (lo, hi), c in zip(blocks(len(predicted)), counts):
        p, g = pairs(lo, hi)
        first = (-start) % step  # global pair index start + first is the next multiple of step
        ratios.append(p[first::step] / g[first::step])
        start += c
        release(predicted, given)
    return float(np.median(np.concatenate(ratios)))


def predict_depth(frames: np.ndarray, cfg: DepthConfig) -> np.ndarray:
    """(T,H,W,3) uint8 -> (T,H,W) float32 meters with Depth Anything; missing weights are a configuration error."""
    from models.depth_anything import DepthModelUnavailable, NotMetricDepth, load_depth_anything

    try:
        model = load_depth_anything(cfg.model, cfg.device)
    except (DepthModelUnavailable, NotMetricDepth) as exc:
        raise ConfigurationError(str(exc)) from exc
    return model.predict(frames, batch_size=cfg.batch_size, input_size=cfg.input_size)


def _frames_named(ep: Episode, frames: np.ndarray, shown: int = 5) -> str:
    """Source frame numbers (what depth.npy is indexed by) of the first few stored frames in `frames`."""
    src = frames if ep.frame_index is None else np.asarray(ep.frame_index)[frames]
    more = f", ... ({len(frames) - shown} more)" if len(frames) > shown else ""
    return ", ".join(str(int(i)) for i in src[:shown]) + more


def check_given_depth(ep: Episode) -> Episode:
    """`given` depth must exist and hold metric depth in every frame; the error names depth.npy and the cause.

    NaN and 0 mark unknown pixels (sensor conventions); +-inf and negative values are broken data,
    which decode counted per frame (`meta["depth_corrupt_px"]`) before masking them to NaN. Refused:
    more than MAX_INVALID_DEPTH_FRACTION unknown overall; any frame with more than
    MAX_CORRUPT_DEPTH_FRACTION of its pixels broken; any frame with more than
    MAX_INVALID_DEPTH_FRACTION unknown. A frame without depth cannot be lifted, and masked silently
    it surfaces stages later as a tracking collapse that blames the camera.
    """
    feature = ep.meta.get("depth_feature")  # a LeRobot dataset's depth feature
    where = f"{ep.source.uri} ({feature})" if feature else f"{ep.source.uri}/depth.npy"
    if ep.depth is None:
        raise ConfigurationError(f"{where}: depth backend 'given' needs depth.npy (T,H,W meters), which is missing")
    per_frame = np.zeros(len(ep.depth))  # unknown share of each frame
    for lo, hi in blocks(len(ep.depth)):
        per_frame[lo:hi] = (~np.isfinite(ep.depth[lo:hi])).reshape(hi - lo, -1).mean(axis=1)
        release(ep.depth)
    frac = float(per_frame.mean()) if len(per_frame) else 0.0
    corrupt = ep.meta.get("depth_corrupt_px")
    if frac > MAX_INVALID_DEPTH_FRACTION:
        detail = ""
        if corrupt is not None:
            detail = f" ({int(corrupt['infinite'].sum())} px infinite, {int(corrupt['negative'].sum())} px negative)"
        raise EpisodeInputError(f"{where}: {frac:.0%} of depth values are NaN, infinite or <= 0{detail}")
    if corrupt is not None:
        broken = corrupt["infinite"] + corrupt["negative"]
        bad = np.flatnonzero(broken > MAX_CORRUPT_DEPTH_FRACTION * corrupt["pixels"])
        if len(bad):
            raise EpisodeInputError(
                f"{where}: {len(bad)} of {ep.n_frames} frames hold infinite or negative depth in more than "
                f"{MAX_CORRUPT_DEPTH_FRACTION:.0%} of their pixels (frames {_frames_named(ep, bad)}: "
                f"{int(corrupt['infinite'][bad].sum())} px infinite, {int(corrupt['negative'][bad].sum())} px negative); "
                "depth must be meters > 0, with NaN or 0 where unknown"
            )
    bad = np.flatnonzero(per_frame > MAX_INVALID_DEPTH_FRACTION)
    if len(bad):
        raise EpisodeInputError(
            f"{where}: {len(bad)} of {ep.n_frames} frames have no valid depth in more than "
            f"{MAX_INVALID_DEPTH_FRACTION:.0%} of their pixels (frames {_frames_named(ep, bad)}; up to "
            f"{per_frame[bad].max():.0%}); depth 'given' needs depth in every frame (depth-anything can fill it in, "
            "scaled to the given frames)"
        )
    return ep


def estimate_depth(ep: Episode, cfg: DepthConfig) -> Episode:
    if cfg.backend == "given":
        return ensure_intrinsics(check_given_depth(ep), cfg)
    predicted = empty_like_episode(ep.spill_dir, "depth", ep.frames.shape[:3], np.float32)
    for lo, hi in blocks(ep.n_frames):
        predicted[lo:hi] = predict_depth(ep.frames[lo:hi], cfg)
        release(ep.frames, predicted)
    ratio = median_depth_ratio(predicted, ep.depth, cfg.min_given_px)
    for lo, hi in blocks(ep.n_frames):
        d = predicted[lo:hi]
        if cfg.scale_to_given and np.isfinite(ratio) and ratio > 0:
            d /= np.float32(ratio)
        d[~(d > 0)] = np.nan  # unknown, as in given depth
        release(predicted)
    ep = ep.replace(depth=predicted, clean_depth=None, depth_source="depth-anything", depth_scale_ratio=ratio)
    return ensure_intrinsics(ep, cfg)


class Depth(Stage[DepthConfig]):
    """Stage 1a (docs/method.md#stage-1-depth-and-camera-poses): metric depth, given or predicted."""

    name = "depth"

    def settings(self, cfg: IngestConfig) -> DepthConfig:
        return cfg.depth

    def precheck(self, src: EpisodeSource, settings: DepthConfig) -> None:
        if src.kind == "video" and settings.backend == "given":
            raise ConfigurationError(
                f"{src.uri}: a plain video has no depth, but the config asks for depth='given'; use "
                "--depth depth-anything, or give an episode directory with depth.npy"
            )

    def warm(self, settings: DepthConfig) -> None:
        if settings.backend != "depth-anything":
            return
        from models.depth_anything import load_depth_anything

        load_depth_anything(settings.model, settings.device)

    def resources(self, settings: DepthConfig) -> Resources:
        return Resources(gpus=settings.gpus)

    def uses_model(self, settings: DepthConfig) -> bool:
        return settings.backend == "depth-anything"

    def run(self, ep: Episode, settings: DepthConfig) -> Episode:
        return estimate_depth(ep, settings)
