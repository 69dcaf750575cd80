"""Stage 0: read an episode's files (video, depth, cameras, meta) and subsample to the preset's rate.

Every check names the file and the cause, so a bad input becomes a readable `failed` row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import cv2
from av.video.reformatter import VideoReformatter
import numpy as np

from tasks.config import DecodeConfig, IngestConfig
from tasks.errors import EpisodeInputError
from tasks.extract.intrinsics import check_pinhole, intrinsics_from_metadata, video_metadata
from tasks.stage import Stage
from tasks.types import Episode, EpisodeSource

DECODE_THREADS = int(os.environ.get("MU0_DECODE_THREADS", "0"))


def subsample_stride(src_fps: float, target_fps: float | None) -> int:
    if not target_fps or not src_fps or target_fps >= src_fps:
        return 1
    return max(1, int(round(src_fps / target_fps)))


def probe_video(path: Path) -> None:
    """Cheap checks before any frame is decoded: the file exists, is not empty, and holds a video stream."""
    if not path.exists():
        raise EpisodeInputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise EpisodeInputError(f"{path}: file is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EpisodeInputError(f"{path}: no video stream")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from exc


def read_video(path: Path, cfg: DecodeConfig) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Decode with PyAV: (frames (T,H,W,3) uint8 RGB, frame_index (T,), source fps, source frame count)."""
    probe_video(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise EpisodeInputError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = DECODE_THREADS  # 0 = FFmpeg decides; Ray workers ask for 1
            src_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            expected = int(stream.frames or 0)
            stride = subsample_stride(src_fps, cfg.target_fps)
            frames, index = [], []
            n = 0
            # One reformatter for the whole video: `frame.to_ndarray(format=...)` builds a new
            # swscale context per frame, which costs more than decoding a small frame.
            rgb = VideoReformatter()
            for n, frame in enumerate(container.decode(stream), start=1):
                i = n - 1
                if i % stride == 0 and len(frames) < cfg.max_frames:
                    frames.append(rgb.reformat(frame, format="rgb24").to_ndarray())
                    index.append(i)
    except EpisodeInputError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise EpisodeInputError(f"{path}: no decodable frames (file truncated or not a video)")
    if expected and n < expected:
        raise EpisodeInputError(f"{path}: decoded {n} of {expected} frames; the file is truncated")
    fps = src_fps / stride if src_fps else 0.0
    return np.stack(frames), np.asarray(index, dtype=np.int32), fps, n


def read_frame_dir(path: Path, cfg: DecodeConfig, fps: float) -> tuple[np.ndarray, np.ndarray, float, int]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise EpisodeInputError(f"{path}: no .jpg/.png frames")
    stride = subsample_stride(fps, cfg.target_fps)
    keep = list(range(0, len(files), stride))[: cfg.max_frames]
    frames = []
    for i in keep:
        img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise EpisodeInputError(f"{files[i]}: cannot read image")
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if len({f.shape for f in frames}) > 1:
        raise EpisodeInputError(f"{path}: frames have different sizes")
    return np.stack(frames), np.asarray(keep, dtype=np.int32), fps / stride if fps else 0.0, len(files)


def read_depth(
    path: Path, n_src: int, index: np.ndarray, hw: tuple[int, int], max_invalid: float = 1.0
) -> np.ndarray:
    """depth.npy (T,H,W) meters -> float32 at the kept frames, NaN where unknown (at most `max_invalid` of it)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EpisodeInputError(f"{path}: cannot read depth array ({exc})") from exc
    if arr.ndim != 3 or arr.shape != (n_src, *hw):
        raise EpisodeInputError(
            f"{path}: depth has shape {tuple(arr.shape)}, expected (T, H, W) = {(n_src, *hw)} to match the video"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise EpisodeInputError(f"{path}: depth dtype {arr.dtype}; expected float16/float32 meters")
    # Every frame kept (stride 1): one contiguous copy instead of a gather.
    depth = np.array(arr if len(index) == n_src else arr[index], dtype=np.float32)
    bad = ~((depth > 0) & (depth < np.inf))  # NaN, +-inf or <= 0 (NaN compares False)
    frac = np.count_nonzero(bad) / bad.size
    if frac > max_invalid:
        raise EpisodeInputError(f"{path}: {frac:.0%} of depth values are NaN, infinite or <= 0")
    depth[bad] = np.nan
    return depth


def read_cameras(path: Path, n_src: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        cams = np.load(path, allow_pickle=False)
        K = np.asarray(cams["K"], dtype=np.float64)
        w2c = np.asarray(cams["w2c"], dtype=np.float64) if "w2c" in cams.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise EpisodeInputError(f"{path}: cannot read K/w2c ({exc})") from exc
    if K.shape == (n_src, 3, 3):
        if not np.allclose(K, K[0], rtol=1e-4):
            raise EpisodeInputError(f"{path}: per-frame intrinsics that change over time are not supported")
        K = K[0]
    check_pinhole(K, str(path), accepted="(3,3) or (T,3,3) pinhole matrix")
    if w2c is not None:
        if w2c.shape != (n_src, 4, 4) or not np.isfinite(w2c).all():
            raise EpisodeInputError(f"{path}: w2c has shape {w2c.shape}, expected finite (T,4,4) with T={n_src}")
        R = w2c[:, :3, :3]
        if np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max() > 1e-3:
            raise EpisodeInputError(f"{path}: w2c rotations are not orthonormal")
        w2c = w2c[index]
    return K, w2c


def downscale(ep_frames: np.ndarray, depth: np.ndarray | None, K: np.ndarray | None, max_width: int | None):
    """Shrink to `max_width` keeping aspect; K follows the pixel-centre convention."""
    T, H, W, _ = ep_frames.shape
    if not max_width or W <= max_width:
        return ep_frames, depth, K
    s = max_width / W
    size = (max_width, int(round(H * s)))
    frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in ep_frames])
    if depth is not None:
        depth = np.stack([cv2.resize(d, size, interpolation=cv2.INTER_NEAREST) for d in depth])
    if K is not None:
        K = K.copy()
        K[0, :] *= size[0] / W
        K[1, :] *= size[1] / H
        K[0, 2] += 0.5 * size[0] / W - 0.5  # (c + 0.5) * s - 0.5: pixel centres scale about the corner
        K[1, 2] += 0.5 * size[1] / H - 0.5
    return frames, depth, K


def load_meta(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise EpisodeInputError(f"{path}: expected a JSON object")
    return meta


def decode(src: EpisodeSource, cfg: DecodeConfig) -> Episode:
    """Read one episode (input format 1 or 2) into an Episode with frames and whatever depth and cameras it has.

    Depth is read leniently (any share of unknown pixels): whether given depth is required, and how
    complete it must be, is the depth stage's rule; likewise given cameras for the pose stage.
    """
    path = Path(src.uri)
    if src.kind == "video":
        frames, index, fps, n_src = read_video(path, cfg)
        # Depth and poses are estimated later; intrinsics come from the container's tags if it has any.
        found = intrinsics_from_metadata({}, video_metadata(path), frames.shape[2], frames.shape[1], where=str(path))
        K, meta = (found[0], {"intrinsics": found[1]}) if found else (None, {})
        frames, _, K = downscale(frames, None, K, cfg.max_width)
        return Episode(source=src, frames=frames, frame_index=index, fps=fps, K=K, meta=meta)

    meta = load_meta(path / "meta.json")
    if (path / "video.mp4").exists():
        frames, index, fps, n_src = read_video(path / "video.mp4", cfg)
    else:
        frames, index, fps, n_src = read_frame_dir(path / "frames", cfg, float(meta.get("fps", 0) or 0))
    if not fps and meta.get("fps"):
        fps = float(meta["fps"]) / (index[1] - index[0] if len(index) > 1 else 1)
    hw = frames.shape[1:3]

    depth = None
    if (path / "depth.npy").exists():
        depth = read_depth(path / "depth.npy", n_src, index, hw, max_invalid=1.0)
    K = w2c = None
    if (path / "cameras.npz").exists():
        K, w2c = read_cameras(path / "cameras.npz", n_src, index)
        meta = {**meta, "intrinsics": "cameras.npz"}
    else:
        video = path / "video.mp4"
        tags = video_metadata(video) if video.exists() else {}
        found = intrinsics_from_metadata(meta, tags, hw[1], hw[0], where=str(path / "meta.json"))
        if found:
            K, meta = found[0], {**meta, "intrinsics": found[1]}
    frames, depth, K = downscale(frames, depth, K, cfg.max_width)
    return Episode(
        source=src,
        frames=frames,
        frame_index=index,
        fps=fps,
        depth=depth,
        K=K,
        w2c=w2c,
        depth_source="given" if depth is not None else "",
        pose_source="given" if w2c is not None else "",
        meta=meta,
    )


class Decode(Stage[DecodeConfig]):
    """Stage 0 (docs/method.md#stage-0-decode-and-subsample): frames, given depth and cameras, metadata."""

    name = "decode"

    def settings(self, cfg: IngestConfig) -> DecodeConfig:
        return cfg.decode

    def precheck(self, src: EpisodeSource, settings: DecodeConfig) -> None:
        if src.kind == "video":
            probe_video(Path(src.uri))

    def run(self, ep: Episode, settings: DecodeConfig) -> Episode:
        return decode(ep.source, settings)
