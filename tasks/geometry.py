"""Pinhole camera geometry in the conventions of docs/architecture.md#conventions.

World in meters; cameras OpenCV (x right, y down, z forward); `w2c` 4x4 maps world to camera;
`K` 3x3 in pixels with the origin at the centre of the top-left pixel. Everything broadcasts
over leading axes so one call handles (N, T, ...) track arrays.
"""

from __future__ import annotations

import numpy as np


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 transforms (..., 4, 4) without a general matrix inverse."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


def transform(T: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply 4x4 transforms (..., 4, 4) to points (..., 3); leading axes broadcast."""
    return np.einsum("...ij,...j->...i", T[..., :3, :3], xyz) + T[..., :3, 3]


def unproject(uv: np.ndarray, z: np.ndarray, K: np.ndarray, w2c: np.ndarray | None = None) -> np.ndarray:
    """Pixels (..., 2) with depth z (...,) in meters -> camera points, or world points when `w2c` is given."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (uv[..., 0] - cx) / fx * z
    y = (uv[..., 1] - cy) / fy * z
    cam = np.stack([x, y, z], axis=-1)
    if w2c is None:
        return cam
    return transform(invert_rigid(w2c), cam)


def project(xyz: np.ndarray, K: np.ndarray, w2c: np.ndarray | None = None) -> np.ndarray:
    """World points (..., 3) -> (u, v, z) (..., 3) through `w2c` (camera points when None).

    Points behind the camera keep their (meaningless) u, v and a negative z; callers mask on z.
    """
    cam = xyz if w2c is None else transform(w2c, xyz)
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[..., 0] / z + K[0, 2]
        v = K[1, 1] * cam[..., 1] / z + K[1, 2]
    return np.stack([u, v, z], axis=-1)


def inside_image(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """True where pixel centres (..., 2) fall inside the image (half-pixel border included)."""
    u, v = uv[..., 0], uv[..., 1]
    return (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)


def camera_centers(w2c: np.ndarray) -> np.ndarray:
    """Camera centres in world (..., 3)."""
    return invert_rigid(w2c)[..., :3, 3]


def pinhole(width: int, height: int, focal_px: float) -> np.ndarray:
    """K with square pixels and the principal point at the image centre ((W-1)/2, (H-1)/2)."""
    return np.array([[focal_px, 0, (width - 1) / 2], [0, focal_px, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def intrinsics_from_fov(width: int, height: int, fovy_deg: float) -> np.ndarray:
    """Pinhole K for a vertical field of view."""
    return pinhole(width, height, 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2))


def sample_bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear sample of a (H, W) map at pixels (N, 2); NaN outside the image or where a corner is NaN."""
    H, W = img.shape
    u, v = uv[..., 0], uv[..., 1]
    u0 = np.floor(u).astype(np.int64)
    v0 = np.floor(v).astype(np.int64)
    ok = (u0 >= 0) & (v0 >= 0) & (u0 + 1 < W) & (v0 + 1 < H)
    u0c, v0c = np.clip(u0, 0, W - 2), np.clip(v0, 0, H - 2)
    a, b = u - u0c, v - v0c
    out = (
        img[v0c, u0c] * (1 - a) * (1 - b)
        + img[v0c, u0c + 1] * a * (1 - b)
        + img[v0c + 1, u0c] * (1 - a) * b
        + img[v0c + 1, u0c + 1] * a * b
    )
    return np.where(ok, out, np.nan)


def sample_nearest(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-pixel sample of a (H, W) map at pixels (N, 2); NaN (or -1 for ints) outside."""
    H, W = img.shape
    ui = np.rint(uv[..., 0]).astype(np.int64)
    vi = np.rint(uv[..., 1]).astype(np.int64)
    ok = (ui >= 0) & (vi >= 0) & (ui < W) & (vi < H)
    vals = img[np.clip(vi, 0, H - 1), np.clip(ui, 0, W - 1)]
    fill = -1 if np.issubdtype(img.dtype, np.integer) else np.nan
    return np.where(ok, vals, fill)
