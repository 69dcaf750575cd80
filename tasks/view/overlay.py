"""2D quality-control overlays: each stored frame with its samples' future traces drawn on it.

The future of keypoint i at frame t is `samples.future[i]` as (u px, v px, z m) through camera t
(docs/architecture.md#conventions), so it is drawn straight onto frame t's JPEG, in the colour of the track's entity
(tasks/view/scene.py: moving entities vivid, static grey). `overlay_png` gives one frame (the ingest
preview artifact); `write_overlay_mp4` the whole episode through PyAV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa

from storage.frame_codec import decode_jpeg
from storage.query import frame_blobs, leaf_values, samples_of
from tasks.view.scene import EpisodeScene, load_scene

SHIFT = 4  # cv2 fixed-point bits: sub-pixel polylines
DOT_RADIUS_PX = 2


def future_traces(samples: pa.Table, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame t's future traces: uv (N, L, 2), valid (N, L), track_id (N,); empty when t has no sample."""
    row = samples.filter(pa.compute.equal(samples["frame"], frame))
    if row.num_rows == 0:
        return np.zeros((0, 0, 2)), np.zeros((0, 0), bool), np.zeros(0, np.int64)
    track = np.asarray(row["track_id"][0].as_py(), np.int64)
    N = len(track)
    fut = leaf_values(row["future"].slice(0, 1), 3).astype(np.float64)
    L = fut.shape[0] // max(N, 1)
    valid = leaf_values(row["future_valid"].slice(0, 1)).reshape(N, L).astype(bool)
    uvz = fut.reshape(N, L, 3)
    valid &= np.isfinite(uvz).all(-1)
    return uvz[..., :2], valid, track


def draw_future_traces(
    rgb: np.ndarray, uv: np.ndarray, valid: np.ndarray, colors: np.ndarray, thickness: int = 1
) -> np.ndarray:
    """A copy of `rgb` (H, W, 3) with each trace (N, L, 2) drawn as polylines over its valid runs and a dot at its start."""
    out = np.ascontiguousarray(rgb).copy()
    scale = float(1 << SHIFT)
    for pts, ok, color in zip(uv, valid, colors):
        c = tuple(int(x) for x in color)
        fixed = np.rint(np.where(ok[:, None], pts, 0.0) * scale).astype(np.int32)
        # split at invalid steps so a gap is never bridged by a straight line
        breaks = np.flatnonzero(np.diff(ok.astype(np.int8)) != 0) + 1
        for run, run_ok in zip(np.split(fixed, breaks), np.split(ok, breaks)):
            if run_ok[0] and len(run) >= 2:
                cv2.polylines(out, [run.reshape(-1, 1, 2)], False, c, thickness, cv2.LINE_AA, SHIFT)
        if ok[0]:
            cv2.circle(out, tuple(int(x) for x in fixed[0]), DOT_RADIUS_PX << SHIFT, c, -1, cv2.LINE_AA, SHIFT)
    return out


def overlay_frame(scene: EpisodeScene, samples: pa.Table, frame: int, rgb: np.ndarray | None = None) -> np.ndarray:
    """Stored frame `frame` with its future traces drawn (the raw frame when it has no sample)."""
    if rgb is None:
        rgb = decode_jpeg(frame_blobs(scene.root, scene.episode_id, [frame], "jpeg")[0])
    uv, valid, track = future_traces(samples, frame)
    return draw_future_traces(rgb, uv, valid, scene.colors[track]) if len(track) else rgb


def overlay_png(root: str, episode_id: str, frame: int | None = None) -> bytes:
    """PNG bytes of one overlay frame; `frame` None takes the sample frame with the most keypoints."""
    scene = load_scene(root, episode_id)
    samples = samples_of(root, episode_id)
    if frame is None:
        frame = int(samples["frame"][int(np.argmax(samples["track_id"].combine_chunks().value_lengths()))].as_py())
    rgb = overlay_frame(scene, samples, frame)
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def write_overlay_mp4(root: str, episode_id: str, path: str | Path, fps: float | None = None, crf: int = 20) -> int:
    """Write every stored frame with its future traces to an H.264 mp4 at `path`; returns the frame count."""
    scene = load_scene(root, episode_id)
    samples = samples_of(root, episode_id)
    frames = list(range(scene.n_frames))
    rate = Fraction(fps or scene.fps).limit_denominator(1000)
    W, H = scene.width + scene.width % 2, scene.height + scene.height % 2  # yuv420p needs even sizes
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": str(crf)}
        for t, jpeg in zip(frames, frame_blobs(root, episode_id, frames, "jpeg")):
            rgb = overlay_frame(scene, samples, t, decode_jpeg(jpeg))
            if rgb.shape[:2] != (H, W):
                rgb = cv2.copyMakeBorder(rgb, 0, H - rgb.shape[0], 0, W - rgb.shape[1], cv2.BORDER_REPLICATE)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(frames)
