"""Exact pinhole cameras for MuJoCo renders, in the conventions of docs/architecture.md#conventions (OpenCV,
pixel centres).

MuJoCo's `Renderer` draws a mono image as the mean of the two stereo eyes in `scene.camera[0/1]`
(offset by +-ipd/2); reading one eye alone puts points ~7 px off, so the pose is the eyes' mean.
The principal point is ((W-1)/2, (H-1)/2) because pixel (0, 0) is the top-left pixel's centre;
with W/2 the back-projected table is ~2 mm high and tilted.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from tasks.geometry import intrinsics_from_fov


@dataclass(frozen=True)
class FreeCamera:
    """A look-at camera: orbit parameters in MuJoCo's free-camera terms (degrees, meters)."""

    lookat: tuple[float, float, float] = (0.0, 0.72, 0.16)
    distance: float = 0.9
    azimuth: float = 140.0
    elevation: float = -28.0

    def to_mjv(self) -> mujoco.MjvCamera:
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = self.lookat
        cam.distance = self.distance
        cam.azimuth = self.azimuth
        cam.elevation = self.elevation
        return cam


def free_camera_K(model: mujoco.MjModel, width: int, height: int) -> np.ndarray:
    """Intrinsics of the free camera: vertical fov `model.vis.global_.fovy`, square pixels."""
    return intrinsics_from_fov(width, height, float(model.vis.global_.fovy))


def scene_w2c(scene: mujoco.MjvScene) -> np.ndarray:
    """OpenCV world->camera 4x4 of the mono view in `scene` (call after `update_scene` for the frame)."""
    g0, g1 = scene.camera[0], scene.camera[1]
    pos = (np.asarray(g0.pos, np.float64) + np.asarray(g1.pos, np.float64)) / 2
    fwd = np.asarray(g0.forward, np.float64)
    up = np.asarray(g0.up, np.float64)
    R = np.stack([np.cross(fwd, up), -up, fwd])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ pos
    return w2c


SIM_STEPS_PER_S = 20
"""The simulated timeline: one env step is 1/20 s whatever the rate of the written video."""
ORBIT_SWEEP_DEG = 20.0
DEFAULT_ORBIT_DEG_S = 2 * np.pi * ORBIT_SWEEP_DEG / 4.0
"""Peak azimuth rate of the orbit the corpus always had (a 4 s period: 80 frames at 20 fps), 10 pi = 31.4 deg/s.
Written as 2 pi sweep / 4 so that `orbit_period_s` gives back exactly 4.0 and the default orbit is bit-identical."""


def orbit_period_s(orbit_deg_s: float, sweep_deg: float = ORBIT_SWEEP_DEG) -> float:
    """Period (s) of the sinusoidal sweep +-`sweep_deg` whose peak azimuth rate is `orbit_deg_s` (deg/s)."""
    if not (orbit_deg_s > 0 and np.isfinite(orbit_deg_s)):
        raise ValueError(f"orbit_deg_s must be a positive number of degrees per second, not {orbit_deg_s!r}")
    return 2 * np.pi * sweep_deg / orbit_deg_s


def orbit_camera(
    base: FreeCamera,
    i: int | float,
    fps: float = SIM_STEPS_PER_S,
    orbit_deg_s: float = DEFAULT_ORBIT_DEG_S,
    sweep_deg: float = ORBIT_SWEEP_DEG,
    tilt_deg: float = 4.0,
) -> FreeCamera:
    """Camera for frame `i` (at t = i / `fps` s) of a smooth orbit: azimuth swings +-`sweep_deg` around `base`,
    peaking at `orbit_deg_s` deg/s as it passes `base`; elevation dips `tilt_deg` (at most `tilt_deg` pi / period
    deg/s, when the azimuth turns).

    Sinusoids keep the ego-motion smooth (no jerks for trackers); the motion is a function of time, so the
    same orbit is seen at every source rate and does not depend on how long the episode runs. The
    defaults give the orbit of 20 fps corpora before rates existed (period 80 frames).
    """
    period_frames = fps * orbit_period_s(orbit_deg_s, sweep_deg)
    phase = 2 * np.pi * i / period_frames
    az = base.azimuth + sweep_deg * np.sin(phase)
    el = base.elevation - tilt_deg * (1 - np.cos(phase)) / 2
    return FreeCamera(base.lookat, base.distance, float(az), float(el))
