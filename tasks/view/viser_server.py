"""Serve one episode as an interactive 3D scene with viser (the viewer TraceExtract and the μ0 GUI use).

Scene: the selected frame's coloured point cloud (lifted from stored depth), its camera frustum with
the image, the path of all camera centres, every trace as world polylines coloured by entity
(moving vivid, static grey; gaps where a track is not visible) and the trace heads at the frame.
A GUI slider picks the frame; the cloud, frustum and heads follow. `serve_scene` returns at once
(viser serves from its own threads); `SceneViewer.stop()` shuts it down.
"""

from __future__ import annotations

import threading

import numpy as np
import viser
import viser.transforms as tf

from tasks.geometry import camera_centers, invert_rigid
from tasks.view.scene import (
    EpisodeScene,
    load_scene,
    point_cloud,
    read_rgbd,
    scene_extent,
    trace_heads,
    trace_segments,
)


class SceneViewer:
    """A running viser server showing one episode; `show_frame(t)` is what the slider calls."""

    def __init__(self, scene: EpisodeScene, server: viser.ViserServer, host: str, stride: int, max_depth_m: float):
        self.scene, self.server, self.stride, self.max_depth_m = scene, server, stride, max_depth_m
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{server.get_port()}"
        self.frame = -1
        self._lock = threading.Lock()
        self._extent = scene_extent(scene)
        self._focus_m = 1.0  # median depth of the first frame shown (set by serve_scene)
        self._fov_y = float(2 * np.arctan2(scene.height / 2, scene.K[1, 1]))
        self._cloud = self._camera = self._heads = None
        self._traces: dict[str, object] = {}

    def _add_static(self, frame: int) -> None:
        s, api = self.scene, self.server.scene
        c2w0 = invert_rigid(s.w2c[frame])
        api.set_up_direction(tuple(-c2w0[:3, 1]))  # image "up" of the first shown camera
        centers = camera_centers(s.w2c).astype(np.float32)
        if len(centers) > 1:
            path = np.stack([centers[:-1], centers[1:]], axis=1)
            api.add_line_segments("/camera_path", path, colors=(90, 90, 90), thickness=0.002 * self._extent)
        moving = s.is_moving
        for name, keep, width in (("static", ~moving, 0.001), ("moving", moving, 0.003)):
            seg, col = trace_segments(s.tracks_xyz[keep], s.visible[keep], s.colors[keep])
            if len(seg):
                self._traces[name] = api.add_line_segments(
                    f"/traces/{name}", seg, colors=col, thickness=width * self._extent
                )
        # look at the first frame's scene from behind, above and beside its camera, not through its image
        d = self._focus_m
        x, down, fwd = c2w0[:3, 0], c2w0[:3, 1], c2w0[:3, 2]
        self.server.initial_camera.position = tuple(c2w0[:3, 3] - 0.6 * d * fwd - 0.5 * d * down + 0.4 * d * x)
        self.server.initial_camera.look_at = tuple(c2w0[:3, 3] + d * fwd)
        self.server.initial_camera.up = tuple(-down)

    def _add_gui(self, frame: int) -> None:
        s, gui = self.scene, self.server.gui
        gui.add_markdown(
            f"**episode** `{s.episode_id[:12]}`  \n{s.instruction or ''}  \n"
            f"{s.n_frames} frames, {len(s.is_moving)} tracks ({int(s.is_moving.sum())} moving)"
        )
        slider = gui.add_slider("frame", 0, max(s.n_frames - 1, 0), 1, frame)
        statics = gui.add_checkbox("static tracks", True)
        cloud = gui.add_checkbox("point cloud", True)

        @slider.on_update
        def _(_event) -> None:
            self.show_frame(int(slider.value))

        @statics.on_update
        def _(_event) -> None:
            if "static" in self._traces:
                self._traces["static"].visible = statics.value

        @cloud.on_update
        def _(_event) -> None:
            if self._cloud is not None:
                self._cloud.visible = cloud.value

        self.slider = slider

    def show_frame(self, t: int) -> None:
        """Point cloud, frustum (with the image) and trace heads of stored frame t."""
        s = self.scene
        t = int(np.clip(t, 0, s.n_frames - 1))
        with self._lock:
            rgb, depth = read_rgbd(s, t)
            pts, colors = point_cloud(depth, rgb, s.K, s.w2c[t], self.stride, self.max_depth_m)
            z = np.nanmedian(depth) if np.isfinite(depth).any() else 1.0
            point_size = float(2.0 * self.stride * z / s.K[0, 0])  # about one pixel's footprint
            c2w = invert_rigid(s.w2c[t])
            wxyz = tf.SO3.from_matrix(c2w[:3, :3]).wxyz
            heads, head_colors = trace_heads(s, t)
            api = self.server.scene
            with self.server.atomic():
                visible = True if self._cloud is None else self._cloud.visible
                self._cloud = api.add_point_cloud("/frame/cloud", pts, colors, point_size=point_size, visible=visible)
                self._camera = api.add_camera_frustum(
                    "/frame/camera", fov=self._fov_y, aspect=s.width / s.height,
                    scale=0.2 * self._focus_m, thickness=0.004 * self._focus_m,
                    color=(255, 255, 255), image=rgb, format="jpeg", wxyz=wxyz, position=c2w[:3, 3],
                )
                if len(heads):
                    self._heads = api.add_point_cloud(
                        "/frame/trace_heads", heads, head_colors, point_size=4 * point_size, point_shape="circle"
                    )
                elif self._heads is not None:
                    self._heads.visible = False
            self.frame = t

    def stop(self) -> None:
        self.server.stop()


def serve_scene(
    root: str,
    episode_id: str,
    frame: int = 0,
    host: str = "127.0.0.1",
    port: int = 8080,
    stride: int = 1,
    max_depth_m: float = 10.0,
    verbose: bool = False,
) -> SceneViewer:
    """Start a viser server showing episode `episode_id` at stored frame `frame`; returns once it serves."""
    scene = load_scene(root, episode_id)
    if not 0 <= frame < scene.n_frames:
        raise ValueError(f"frame {frame} is outside 0..{scene.n_frames - 1}")
    server = viser.ViserServer(host=host, port=port, label=f"mu0 {episode_id[:12]}", verbose=verbose)
    viewer = SceneViewer(scene, server, host, stride, max_depth_m)
    depth = read_rgbd(scene, frame)[1]
    viewer._focus_m = float(np.nanmedian(depth)) if np.isfinite(depth).any() else scene_extent(scene)
    try:
        viewer._add_static(frame)
        viewer._add_gui(frame)
        viewer.show_frame(frame)
    except BaseException:
        server.stop()
        raise
    return viewer
