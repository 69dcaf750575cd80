"""Camera intrinsics for episodes that come without `K`: from the file's metadata, else a field-of-view prior.

Order of trust: cameras.npz `K` (read by decode) > meta.json `K` > meta.json field of view (`hfov_deg` or
`fov_deg`: horizontal; `vfov_deg`: vertical) > the video container's 35 mm-equivalent focal length (phones
write e.g. `com.apple.quicktime.camera.focal_length.35mm_equivalent`) > `DepthConfig.fov_prior_deg`, a
horizontal field of view set per corpus. Every K has square pixels and, unless given, the principal point at
the image centre ((W-1)/2, (H-1)/2: pixel origin at the top-left pixel's centre). Where K came from is
recorded in `ep.meta["intrinsics"]`.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np

from tasks.config import DepthConfig
from tasks.errors import EpisodeInputError
from tasks.geometry import intrinsics_from_fov, pinhole
from tasks.types import Episode

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 35 mm-equivalent focal lengths refer to this diagonal
_FOCAL_35MM_SUFFIXES = ("focal_length.35mm_equivalent", "focal_length_35mm", "focallengthin35mmfilm")


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """K for a horizontal field of view: f = (W/2) / tan(hfov/2), square pixels, centred principal point."""
    return pinhole(width, height, 0.5 * width / math.tan(math.radians(hfov_deg) / 2))


def intrinsics_from_focal_35mm(width: int, height: int, focal_35mm: float) -> np.ndarray:
    """K from a 35 mm-equivalent focal length: the image diagonal plays the full-frame diagonal (43.27 mm)."""
    return pinhole(width, height, focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM)


def video_metadata(path: str | Path) -> dict[str, str]:
    """Container and first video stream tags as PyAV exposes them (keys lower-cased); {} when unreadable."""
    try:
        with av.open(str(path)) as container:
            tags = dict(container.metadata)
            if container.streams.video:
                tags.update(container.streams.video[0].metadata)
    except (av.error.FFmpegError, OSError):
        return {}
    return {str(k).lower(): str(v) for k, v in tags.items()}


def resize_intrinsics(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """K for frames resized from src_size (W, H) to dst_size (w, h): pixel centres scale about the corner.

    With the origin at the top-left pixel's centre, u' = (u + 0.5) * w / W - 0.5 (and likewise v),
    which is where cv2.resize and swscale put a resized pixel.
    """
    if tuple(src_size) == tuple(dst_size):
        return K
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    K = np.array(K, dtype=np.float64)
    K[0, :] *= sx
    K[1, :] *= sy
    K[0, 2] += 0.5 * sx - 0.5
    K[1, 2] += 0.5 * sy - 0.5
    return K


def check_pinhole(K: np.ndarray, where: str, accepted: str = "3x3 pinhole matrix (or 9 numbers)") -> np.ndarray:
    """`K` if it is a finite 3x3 matrix with positive focal lengths; else a bad-input error naming `where`."""
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise EpisodeInputError(f"{where}: K must be a finite {accepted}, got shape {K.shape}")
    return K


def _fov(meta: dict, key: str, where: str) -> float | None:
    if meta.get(key) is None:
        return None
    try:
        deg = float(meta[key])
    except (TypeError, ValueError):
        raise EpisodeInputError(f"{where}: {key} must be a number of degrees, got {meta[key]!r}") from None
    if not 1 < deg < 179:
        raise EpisodeInputError(f"{where}: {key}={deg} is not a field of view in degrees (1..179)")
    return deg


def intrinsics_from_metadata(
    meta: dict, tags: dict[str, str], width: int, height: int, where: str = "meta.json"
) -> tuple[np.ndarray, str] | None:
    """(K in pixels of a width x height frame, where it came from), or None when nothing says."""
    if meta.get("K") is not None:
        try:
            K = np.asarray(meta["K"], dtype=np.float64).reshape(3, 3)
        except (TypeError, ValueError):
            raise EpisodeInputError(f"{where}: K must be a 3x3 matrix (or 9 numbers), got {meta['K']!r}") from None
        return check_pinhole(K, where), f"{where} K"
    for key in ("hfov_deg", "fov_deg"):
        deg = _fov(meta, key, where)
        if deg is not None:
            return intrinsics_from_hfov(width, height, deg), f"{where} {key}={deg:g}"
    deg = _fov(meta, "vfov_deg", where)
    if deg is not None:
        return intrinsics_from_fov(width, height, deg), f"{where} vfov_deg={deg:g}"
    for key, value in tags.items():
        if key.endswith(_FOCAL_35MM_SUFFIXES):
            try:
                focal = float(value.split()[0])
            except (ValueError, IndexError):
                continue
            if focal > 0:
                return intrinsics_from_focal_35mm(width, height, focal), f"video metadata {key}={focal:g}"
    return None


def ensure_intrinsics(ep: Episode, cfg: DepthConfig) -> Episode:
    """`ep` with K set: kept when decode found one, else the corpus's horizontal field-of-view prior."""
    if ep.K is not None:
        return ep
    width, height = ep.image_size
    K = intrinsics_from_hfov(width, height, cfg.fov_prior_deg)
    return ep.replace(K=K, meta={**ep.meta, "intrinsics": f"prior hfov {cfg.fov_prior_deg:g} deg"})
