"""Hand-built episodes whose motion is known, shared by the captions tests."""

from __future__ import annotations

import numpy as np

from tasks.types import Episode, EpisodeDemo, EpisodeSource

T, H, W = 160, 96, 128
K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])


def smoothstep(t: np.ndarray, a: int, b: int) -> np.ndarray:
    s = np.clip((t - a) / (b - a), 0, 1)
    return s * s * (3 - 2 * s)


def object_path() -> np.ndarray:
    """(T, 3) world path: +10 cm along x in frames 15-50, then +10 cm along -y (up) in frames 85-120."""
    t = np.arange(T, dtype=float)
    return np.stack([0.1 * smoothstep(t, 15, 50), -0.1 * smoothstep(t, 85, 120), np.zeros(T)], -1)


def make_episode(tmp_path, camera_shake: float = 0.0, n_background: int = 0, with_poses: bool = True) -> Episode:
    """20 object tracks (cluster 3) around (0, 0, 1 m) that follow `object_path`, plus static background."""
    rng = np.random.default_rng(0)
    obj = rng.uniform(-0.05, 0.05, (20, 3)) + [0, 0, 1.0]
    bg = np.c_[rng.uniform(-0.4, 0.4, (n_background, 2)), rng.uniform(1.5, 2.0, n_background)]
    xyz = np.concatenate([obj[:, None] + object_path()[None], np.repeat(bg[:, None], T, 1)]).astype(np.float32)
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, 0, 3] = camera_shake * np.sin(2 * np.pi * np.arange(T) / 15)  # shaky camera: x translation
    cam = xyz @ np.eye(3).T + w2c[None, :, :3, 3]
    uv = (cam[..., :2] / cam[..., 2:]) * 100.0 + [64, 48]
    N = len(xyz)
    actions = np.zeros((T, 4), np.float32)
    actions[:, -1] = np.where(np.arange(T) < 55, -1.0, 1.0)  # gripper closes at frame 55
    demo = EpisodeDemo(np.zeros((T, 0), np.float32), actions, np.arange(T) / 10.0, 10.0)  # what decode reads
    return Episode(
        source=EpisodeSource(uri=str(tmp_path), episode_id="ep-known", preset="sim"),
        frames=np.zeros((T, H, W, 3), np.uint8),
        frame_index=np.arange(T, dtype=np.int32),
        fps=10.0,
        K=K if with_poses else None,
        w2c=w2c if with_poses else None,
        meta={"instruction": "Open the drawer.", "task": "drawer-open", "embodiment": "robot_gripper"},
        query_frame=np.zeros(N, np.int32),
        query_uv=uv[:, 0].astype(np.float32),
        cluster_id=np.array([3] * 20 + [7] * n_background, np.int32),
        tracks_uv=uv.astype(np.float32),
        visible=np.ones((N, T), bool),
        tracks_xyz=xyz if with_poses else None,
        is_moving=np.array([True] * 20 + [False] * n_background),
        demo=demo,
    )
