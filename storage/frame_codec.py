"""How the `frames` table stores pixels: RGB as JPEG, depth as a 16-bit PNG of millimetres.

Both directions live here so writers (tasks/extract/rows.py) and readers (viewers, the torch loader, the
stats task) agree on one convention: 0 mm is unknown, 65,535 mm is the cap (anything farther).
"""

from __future__ import annotations

import cv2
import numpy as np

DEPTH_CAP_MM = 65535  # the PNG's saturation value: "65.535 m or farther", not a measurement


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def encode_depth_png16(depth: np.ndarray) -> bytes:
    """Depth (m) as a lossless 16-bit PNG of rounded millimetres; 0 = unknown (NaN, inf, <= 0)."""
    mm = depth.astype(np.float64)
    mm *= 1000.0
    mm[~(mm < np.inf)] = 0.0  # NaN and +inf; -inf and negatives go to 0 in the clip
    np.rint(mm, out=mm)
    np.clip(mm, 0, DEPTH_CAP_MM, out=mm)
    # OpenCV's default PNG settings (level 1, SUB filter, RLE) are its fastest: an explicit
    # IMWRITE_PNG_COMPRESSION switches to adaptive filtering and is about 2x slower.
    return cv2.imencode(".png", mm.astype(np.uint16))[1].tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("could not decode the stored JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_depth_png16(data: bytes | None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) float32 meters from the stored 16-bit PNG; NaN where unknown or at the far cap.

    `data` None (a frame stored without depth) gives all-NaN of `shape`.
    """
    if data is None:
        if shape is None:
            raise ValueError("frame has no stored depth")
        return np.full(shape, np.nan, np.float32)
    mm = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mm is None or mm.dtype != np.uint16 or mm.ndim != 2:
        raise ValueError("depth_png16 blob is not a 16-bit single-channel PNG")
    z = mm.astype(np.float32) / 1000.0
    z[(mm == 0) | (mm == DEPTH_CAP_MM)] = np.nan
    return z
