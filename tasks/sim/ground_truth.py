"""Exact 3D trajectories of query pixels in a rendered Meta-World episode, for grading trackers.

A query pixel is lifted with the rendered depth at its query frame, attached to the body the
segmentation says it lies on (in that body's local frame), and carried to every frame with the
body's simulated pose. It is visible in a frame when it projects inside the image onto the same
body at (within 1 cm) the rendered depth. All pixel look-ups are nearest-pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from tasks.geometry import inside_image, project, unproject

DEPTH_TOL_M = 0.01
MOVE_TOL_M = 0.01
ROT_TOL_DEG = 2.0


def _rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle of the relative rotation Ra^T Rb (..., 3, 3) in degrees."""
    tr = np.einsum("...ji,...ji->...", Ra, Rb)
    return np.degrees(np.arccos(np.clip((tr - 1) / 2, -1.0, 1.0)))


@dataclass
class GroundTruth:
    """Per-frame body poses, body-id segmentation, rendered depth and exact cameras of one episode."""

    seg_body: np.ndarray  # (T, H, W) int16, -1 where no geom
    body_pos: np.ndarray  # (T, B, 3) world
    body_rot: np.ndarray  # (T, B, 3, 3) body->world
    depth: np.ndarray  # (T, H, W) meters (z along the optical axis)
    K: np.ndarray  # (3, 3)
    w2c: np.ndarray  # (T, 4, 4) OpenCV world->camera
    body_names: np.ndarray = field(default_factory=lambda: np.array([], dtype=str))

    @property
    def n_frames(self) -> int:
        return self.depth.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.depth.shape[2], self.depth.shape[1]

    def body_id(self, name: str) -> int:
        hits = np.flatnonzero(self.body_names == name)
        if not hits.size:
            raise KeyError(f"no body named {name!r}")
        return int(hits[0])

    def _lookup(self, frames: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest-pixel (depth, body, inside) at integer `frames` and pixels `uv` (same leading shape)."""
        W, H = self.size
        ui = np.rint(np.nan_to_num(uv[..., 0], nan=-1.0)).astype(np.int64)
        vi = np.rint(np.nan_to_num(uv[..., 1], nan=-1.0)).astype(np.int64)
        inside = (ui >= 0) & (vi >= 0) & (ui < W) & (vi < H)
        ui, vi = np.clip(ui, 0, W - 1), np.clip(vi, 0, H - 1)
        return self.depth[frames, vi, ui], self.seg_body[frames, vi, ui].astype(np.int64), inside

    def trajectory(self, t: int | np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World trajectories of query pixels `uv` (Q, 2) seen at frame(s) `t` (int or (Q,)).

        Returns xyz (Q, T, 3) (NaN for queries off every body), visible (Q, T) and body id (Q,) (-1: none).
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        Q, T = len(uv), self.n_frames
        tq = np.broadcast_to(np.asarray(t, dtype=np.int64), (Q,))
        if Q and ((tq < 0) | (tq >= T)).any():
            raise IndexError(f"query frame outside 0..{T - 1}")
        z, body, inside = self._lookup(tq, uv)
        on_body = inside & (body >= 0) & np.isfinite(z)
        body = np.where(on_body, body, -1)
        b = np.maximum(body, 0)

        world = unproject(uv, z, self.K, self.w2c[tq])  # (Q, 3)
        R_t, p_t = self.body_rot[tq, b], self.body_pos[tq, b]  # (Q, 3, 3), (Q, 3)
        local = np.einsum("qji,qj->qi", R_t, world - p_t)  # R^T (x - p)
        R_all = self.body_rot[:, b].transpose(1, 0, 2, 3)  # (Q, T, 3, 3)
        p_all = self.body_pos[:, b].transpose(1, 0, 2)  # (Q, T, 3)
        xyz = np.einsum("qtij,qj->qti", R_all, local) + p_all
        xyz[~on_body] = np.nan

        uvz = project(xyz, self.K, self.w2c[None])  # (Q, T, 3)
        frames = np.broadcast_to(np.arange(T), (Q, T))
        d_s, body_s, _ = self._lookup(frames, uvz[..., :2])
        W, H = self.size
        visible = (
            on_body[:, None]
            & (uvz[..., 2] > 0)
            & inside_image(uvz[..., :2], W, H)
            & (body_s == body[:, None])
            & (np.abs(d_s - uvz[..., 2]) < DEPTH_TOL_M)
        )
        return xyz, visible, body

    def is_moving_body(self, body_ids: np.ndarray | int) -> np.ndarray:
        """True for bodies that translate > 1 cm or turn > 2 deg from their first pose (ids < 0: False)."""
        ids = np.asarray(body_ids, dtype=np.int64)
        moving = self.moving_bodies
        return np.where(ids >= 0, moving[np.clip(ids, 0, len(moving) - 1)], False)

    @cached_property
    def moving_bodies(self) -> np.ndarray:
        """(B,) bool: which bodies move over the episode."""
        shift = np.linalg.norm(self.body_pos - self.body_pos[:1], axis=-1).max(axis=0)
        turn = _rotation_angle_deg(self.body_rot[:1], self.body_rot).max(axis=0)
        return (shift > MOVE_TOL_M) | (turn > ROT_TOL_DEG)


def load_ground_truth(episode_dir: str | Path, frame_index: np.ndarray | None = None) -> GroundTruth:
    """Read an episode directory written by `tasks.sim.generate` (ground_truth.npz + depth.npy + cameras.npz), at
    the source frames `frame_index` (the ones decode kept: tracks index stored frames) or at every frame."""
    ep = Path(episode_dir)
    gt, cams = np.load(ep / "ground_truth.npz"), np.load(ep / "cameras.npz")
    at = slice(None) if frame_index is None else np.asarray(frame_index)
    return GroundTruth(
        seg_body=gt["seg_body"][at],
        body_pos=gt["body_pos"][at],
        body_rot=gt["body_rot"][at],
        depth=np.array(np.load(ep / "depth.npy", mmap_mode="r")[at]),
        K=cams["K"],
        w2c=cams["w2c"][at],
        body_names=gt["body_names"],
    )
