"""What the trace viewers draw, as plain arrays: a frame's coloured point cloud, camera frusta, traces.

The viewers (tasks/view/viser_server.py, tasks/view/rerun_recording.py, tasks/view/overlay.py) only hand these
arrays to a renderer. Conventions are those of docs/architecture.md#conventions: world in meters,
OpenCV cameras, `w2c` 4x4 per stored frame, `K` in pixels of the stored resolution. Depth comes from
the `frames` table's `depth_png16` blob (16-bit PNG of millimetres, 0 = unknown, 65535 = clipped far plane).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from storage.dataset import open_table
from storage.frame_codec import decode_depth_png16, decode_jpeg
from storage.query import frame_blobs, leaf_values, quote
from tasks.geometry import camera_centers, invert_rigid, transform, unproject

GREY = (150, 150, 150)
# Vivid, well separated colours for moving entities (cluster ids); -1 (unclustered) takes the first.
PALETTE = np.array(
    [(255, 64, 64), (40, 200, 255), (255, 200, 0), (120, 230, 60), (230, 80, 255), (255, 140, 30),
     (0, 230, 170), (255, 100, 180), (100, 120, 255), (190, 255, 80)],
    dtype=np.uint8,
)


class EpisodeNotFound(LookupError):
    """No (unique) episode matches the id or prefix the user gave."""


@dataclass(frozen=True)
class EpisodeScene:
    """One episode's cameras and world traces, read once; frames are read on demand.

    tracks_xyz (N, T, 3) world m, NaN where unknown; visible (N, T); cluster_id, is_moving (N,).
    """

    root: str
    episode_id: str
    n_frames: int
    width: int
    height: int
    fps: float
    K: np.ndarray
    w2c: np.ndarray
    tracks_xyz: np.ndarray
    visible: np.ndarray
    cluster_id: np.ndarray
    is_moving: np.ndarray
    n_samples: int
    instruction: str = ""

    @property
    def colors(self) -> np.ndarray:
        return entity_colors(self.cluster_id, self.is_moving)


def _table(root: str, name: str):
    ds = open_table(root, name)
    if ds is None:
        raise EpisodeNotFound(f"{root} has no {name!r} table (is it a trace dataset?)")
    return ds


def resolve_episode(root: str, id_or_prefix: str) -> str:
    """The full episode id for an id or a unique prefix of one."""
    prefix = id_or_prefix.strip()
    if not prefix:
        raise EpisodeNotFound("give an episode id (or a unique prefix of one)")
    ids = _table(root, "episodes").to_table(columns=["episode_id"], filter=f"starts_with(episode_id, {quote(prefix)})")
    hits = sorted(set(ids["episode_id"].to_pylist()))
    if not hits:
        raise EpisodeNotFound(f"no episode id starts with {prefix!r} in {root}")
    if len(hits) > 1:
        some = ", ".join(h[:12] for h in hits[:5])
        raise EpisodeNotFound(f"{prefix!r} matches {len(hits)} episodes ({some}...): give more characters")
    return hits[0]


def load_scene(root: str, episode_id: str) -> EpisodeScene:
    """Cameras, intrinsics and world traces of one episode; refuses episodes without samples."""
    ep = _table(root, "episodes").to_table(filter=f"episode_id = {quote(episode_id)}")
    if ep.num_rows == 0:
        raise EpisodeNotFound(f"no episode {episode_id} in {root}")
    row = ep.slice(0, 1)
    status, n_samples = row["status"][0].as_py(), row["n_samples"][0].as_py() or 0
    if status != "ok" or n_samples == 0:
        errors = json.loads(row["errors"][0].as_py() or "{}")
        why = f": {'; '.join(f'{k}: {v}' for k, v in errors.items())}" if errors else ""
        raise EpisodeNotFound(f"episode {episode_id[:12]} has no samples to show (status {status}{why})")
    T = int(row["n_frames"][0].as_py())
    tr = _table(root, "tracks").to_table(filter=f"episode_id = {quote(episode_id)}").sort_by("track_id")
    N = tr.num_rows
    xyz = leaf_values(tr["xyz"], 3).astype(np.float64).reshape(N, T, 3) if N else np.zeros((0, T, 3))
    vis = leaf_values(tr["visible"]).astype(bool).reshape(N, T) if N else np.zeros((0, T), bool)
    return EpisodeScene(
        root=root,
        episode_id=episode_id,
        n_frames=T,
        width=int(row["width"][0].as_py()),
        height=int(row["height"][0].as_py()),
        fps=float(row["fps"][0].as_py() or 10.0),
        K=np.asarray(row["K"][0].as_py(), np.float64).reshape(3, 3),
        w2c=leaf_values(row["w2c"], 16).astype(np.float64).reshape(-1, 4, 4),
        tracks_xyz=xyz,
        visible=vis & np.isfinite(xyz).all(-1),
        cluster_id=np.asarray(tr["cluster_id"].to_numpy(zero_copy_only=False), np.int64) if N else np.zeros(0, np.int64),
        is_moving=np.asarray(tr["is_moving"].to_numpy(zero_copy_only=False), bool) if N else np.zeros(0, bool),
        n_samples=int(n_samples),
        instruction=row["instruction"][0].as_py() or "",
    )


def read_rgbd(scene: EpisodeScene, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, depth (H, W) float32 m) of one stored frame."""
    jpeg = frame_blobs(scene.root, scene.episode_id, [frame], "jpeg")[0]
    depth = frame_blobs(scene.root, scene.episode_id, [frame], "depth_png16")[0]
    return decode_jpeg(jpeg), decode_depth_png16(depth, (scene.height, scene.width))


def point_cloud(
    depth_m: np.ndarray, rgb: np.ndarray, K: np.ndarray, w2c: np.ndarray, stride: int = 1, max_depth_m: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """World points (M, 3) float32 and their colours (M, 3) uint8 from every `stride`-th pixel with depth.

    Pixels farther than `max_depth_m` (sky, far plane) are dropped: they would dwarf the scene.
    """
    H, W = depth_m.shape
    v, u = np.mgrid[0:H:stride, 0:W:stride]
    z = depth_m[v, u]
    keep = np.isfinite(z) & (z > 0) & (z <= max_depth_m)
    uv = np.stack([u[keep], v[keep]], axis=-1).astype(np.float64)
    xyz = unproject(uv, z[keep].astype(np.float64), K, w2c)
    return xyz.astype(np.float32), rgb[v[keep], u[keep]].astype(np.uint8)


def frustum_corners(K: np.ndarray, w2c: np.ndarray, width: int, height: int, depth_m: float = 0.1) -> np.ndarray:
    """(..., 5, 3) world points: the camera centre, then the image corners (TL, TR, BR, BL) at `depth_m`."""
    corners_uv = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    cam = unproject(corners_uv, np.full(4, depth_m), K)  # (4, 3) camera frame
    c2w = invert_rigid(np.asarray(w2c, np.float64))
    world = transform(c2w[..., None, :, :], cam)  # (..., 4, 3)
    apex = camera_centers(np.asarray(w2c, np.float64))[..., None, :]
    return np.concatenate([apex, world], axis=-2)


def frustum_segments(K: np.ndarray, w2c: np.ndarray, width: int, height: int, depth_m: float = 0.1) -> np.ndarray:
    """(..., 8, 2, 3) line segments of camera frusta (4 edges from the apex, 4 around the image)."""
    c = frustum_corners(K, w2c, width, height, depth_m)
    pairs = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)]
    return np.stack([np.stack([c[..., a, :], c[..., b, :]], axis=-2) for a, b in pairs], axis=-3)


def entity_colors(cluster_id: np.ndarray, is_moving: np.ndarray) -> np.ndarray:
    """(N, 3) uint8: moving tracks by entity (cluster id) in vivid colours, static ones grey."""
    cid = np.asarray(cluster_id, np.int64)
    out = PALETTE[(cid + 1) % len(PALETTE)].copy()
    out[~np.asarray(is_moving, bool)] = GREY
    return out


def trace_segments(
    xyz: np.ndarray, visible: np.ndarray, colors: np.ndarray, t0: int = 0, t1: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Segments (M, 2, 3) float32 and colours (M, 2, 3) uint8 of traces between frames t0..t1 (inclusive).

    A segment joins frames t and t+1 of one track only where it is visible at both: gaps stay gaps.
    """
    T = xyz.shape[1]
    t1 = T - 1 if t1 is None else min(int(t1), T - 1)
    t0 = max(int(t0), 0)
    if t1 <= t0 or xyz.shape[0] == 0:
        return np.zeros((0, 2, 3), np.float32), np.zeros((0, 2, 3), np.uint8)
    a, b = xyz[:, t0:t1], xyz[:, t0 + 1 : t1 + 1]
    ok = visible[:, t0:t1] & visible[:, t0 + 1 : t1 + 1]
    track = np.nonzero(ok)[0]
    seg = np.stack([a[ok], b[ok]], axis=1).astype(np.float32)
    col = np.repeat(np.asarray(colors, np.uint8)[track][:, None, :], 2, axis=1)
    return seg, col


def trace_heads(scene: EpisodeScene, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the visible tracks are at frame t: points (M, 3) float32 and colours (M, 3) uint8."""
    ok = scene.visible[:, t]
    return scene.tracks_xyz[ok, t].astype(np.float32), scene.colors[ok]


def scene_extent(scene: EpisodeScene) -> float:
    """A length scale of the scene (m): the spread of the visible trace points, for frustum and point sizes."""
    pts = scene.tracks_xyz[scene.visible]
    if len(pts) < 2:
        return 1.0
    return float(max(np.linalg.norm(np.percentile(pts, 95, axis=0) - np.percentile(pts, 5, axis=0)), 1e-3))


def trace_strips(
    xyz: np.ndarray, visible: np.ndarray, colors: np.ndarray, t0: int = 0, t1: int | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Traces between frames t0..t1 as polylines over their visible runs: strips [(k >= 2, 3)], colours (S, 3)."""
    T = xyz.shape[1]
    t1 = T - 1 if t1 is None else min(int(t1), T - 1)
    t0 = max(int(t0), 0)
    strips, strip_colors = [], []
    for pts, ok, color in zip(xyz[:, t0 : t1 + 1], visible[:, t0 : t1 + 1], np.asarray(colors, np.uint8)):
        breaks = np.flatnonzero(np.diff(ok.astype(np.int8)) != 0) + 1
        for run, run_ok in zip(np.split(pts, breaks), np.split(ok, breaks)):
            if run_ok[0] and len(run) >= 2:
                strips.append(run.astype(np.float32))
                strip_colors.append(color)
    return strips, np.asarray(strip_colors, np.uint8).reshape(-1, 3)
