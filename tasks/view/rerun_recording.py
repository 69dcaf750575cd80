"""Write one episode as a rerun recording (.rrd): open it with `rerun FILE.rrd`.

Timelines follow lerobot's dataset viewer: `frame_index` (sequence) and `timestamp` (seconds).
Entities (world frame, meters; the camera is a pinhole under `world/camera`):
  world/camera         Transform3D (camera to world) + Pinhole (K, resolution, OpenCV RDF axes)
  world/camera/image   the stored JPEG            world/camera/depth   the stored depth (mm)
  world/points         the frame's coloured point cloud lifted from depth
  world/traces         the last `trail` frames of every visible track, coloured by entity
  world/trace_heads    where each visible track is at the frame
  world/camera_path    every camera centre (static)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rerun as rr

from storage.frame_codec import decode_depth_png16, decode_jpeg
from storage.query import frame_blobs
from tasks.geometry import camera_centers, invert_rigid
from tasks.view.scene import (
    EpisodeScene,
    load_scene,
    point_cloud,
    scene_extent,
    trace_heads,
    trace_strips,
)

ENTITIES = (
    "world/camera",
    "world/camera/image",
    "world/camera/depth",
    "world/points",
    "world/traces",
    "world/trace_heads",
    "world/camera_path",
)


def log_episode(
    rec: rr.RecordingStream, scene: EpisodeScene, stride: int = 2, trail: int = 10, max_depth_m: float = 10.0
) -> None:
    """Log every stored frame of `scene` into `rec` (see the module docstring for the entity layout)."""
    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    rec.log("world/camera_path", rr.LineStrips3D([camera_centers(scene.w2c).astype(np.float32)]), static=True)
    rec.log(
        "world/camera",
        rr.Pinhole(image_from_camera=scene.K, resolution=[scene.width, scene.height], camera_xyz=rr.ViewCoordinates.RDF,
                   image_plane_distance=0.1 * scene_extent(scene)),
        static=True,
    )
    frames = list(range(scene.n_frames))
    jpegs = frame_blobs(scene.root, scene.episode_id, frames, "jpeg")
    depths = frame_blobs(scene.root, scene.episode_id, frames, "depth_png16")
    radius = 0.004 * scene_extent(scene)
    for t, jpeg, png in zip(frames, jpegs, depths):
        rec.set_time("frame_index", sequence=t)
        rec.set_time("timestamp", duration=t / scene.fps)
        c2w = invert_rigid(scene.w2c[t])
        rec.log("world/camera", rr.Transform3D(translation=c2w[:3, 3], mat3x3=c2w[:3, :3]))
        rec.log("world/camera/image", rr.EncodedImage(contents=jpeg, media_type="image/jpeg"))
        if png is not None:
            depth = decode_depth_png16(png)
            rec.log("world/camera/depth", rr.DepthImage(np.nan_to_num(depth, nan=0.0), meter=1.0))  # 0: unknown
            pts, colors = point_cloud(depth, decode_jpeg(jpeg), scene.K, scene.w2c[t], stride, max_depth_m)
            rec.log("world/points", rr.Points3D(pts, colors=colors, radii=radius))
        strips, strip_colors = trace_strips(scene.tracks_xyz, scene.visible, scene.colors, t - trail, t)
        rec.log("world/traces", rr.LineStrips3D(strips, colors=strip_colors, radii=0.5 * radius))
        heads, head_colors = trace_heads(scene, t)
        rec.log("world/trace_heads", rr.Points3D(heads, colors=head_colors, radii=1.5 * radius))


def write_rrd(root: str, episode_id: str, path: str | Path, stride: int = 2, trail: int = 10) -> Path:
    """Write the recording of one episode to `path` (parent folders made); returns the path."""
    scene = load_scene(root, episode_id)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = rr.RecordingStream("mu0_trace_view", recording_id=episode_id)
    rec.save(str(path))
    try:
        log_episode(rec, scene, stride=stride, trail=trail)
    finally:
        rec.flush()
        rec.disconnect()
    return path
