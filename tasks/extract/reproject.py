"""Stage 4: world tracks seen through one frame's camera (docs/method.md#stage-4-lifting-and-reprojection).

Samples store each trace as (u px, v px, z m) through the camera of its anchor frame t. Static
world points then project to fixed pixels, so camera ego-motion is removed from the target.
The full (T_cam, N, T, 3) tensor is T times the track array, so callers ask for a few cameras at a time.
"""

from __future__ import annotations

import numpy as np

from tasks.geometry import project


def uvz_through(t: int, xyz: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """All world points xyz (N, T, 3) seen through camera t -> (N, T, 3) of (u px, v px, z m).

    Off-screen points keep their (possibly far outside) pixel coordinates: clipping would turn real
    motion that leaves the frame into fake stillness at the border. Points at or behind the camera
    (z <= 0) have no meaningful pixel, so the whole row is NaN there, as are unknown (NaN) inputs;
    `uvz_valid` is the matching mask.
    """
    uvz = project(np.asarray(xyz, dtype=np.float64), K, np.asarray(w2c)[t])
    bad = ~(uvz[..., 2] > 0)  # NaN z counts as bad too
    uvz[bad] = np.nan
    return uvz


def uvz_through_cameras(xyz: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """All world points xyz (N, T, 3) through each camera w2c (C, 4, 4) -> (C, N, T, 3), like `uvz_through`."""
    return np.stack([uvz_through(c, xyz, K, w2c) for c in range(len(w2c))])


def uvz_valid(uvz: np.ndarray) -> np.ndarray:
    """(..., ) bool: finite and in front of the camera."""
    return np.isfinite(uvz).all(-1) & (uvz[..., 2] > 0)
