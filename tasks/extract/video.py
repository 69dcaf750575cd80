"""Reading a video (or a frames/ directory) for stage 0: probe the container, decode, subsample, scale.

Frames are scaled to the working width as each one is decoded, so a 4K source is never held at full
resolution. Tolerated, with a note: a container announcing a few more frames than it decodes (edit
lists and dropped frames; up to 2% of the announced count rounded up, at most 5) and a variable frame
rate; each stored frame's time is kept. Every refusal names the file and the cause.

A time window reads one episode out of a file that holds several (LeRobot v3 concatenates episodes per
camera): seek to the keyframe before it, drop earlier frames, stop at its end. A frame belongs to the
window [start, end) when its time is within half a frame interval of it, so timestamps that jitter or
were rounded still select the right frames.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from tasks.config import DecodeConfig
from tasks.errors import EpisodeInputError
from tasks.extract.spill import FrameSink

MiB = 1 << 20

DECODE_THREADS = int(os.environ.get("MU0_DECODE_THREADS", "0"))
MAX_SHORT_FRACTION = 0.02  # announced-but-missing frames tolerated, as a share of the announced count...
MAX_SHORT_FRAMES = 5  # ...and at most this many (at least 1 always)
VFR_SPREAD = 0.25  # frame intervals further than this from their median make a variable frame rate
_IMAGE_DEMUXERS = {"image2", "image2pipe"}  # plus every "<codec>_pipe": FFmpeg's single-image readers
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"}


@dataclass(frozen=True)
class VideoInfo:
    """What a container's header says about its first video stream (before any frame is decoded)."""

    width: int
    height: int
    frames: int  # announced frame count; 0 when the container does not say
    fps: float
    duration_s: float = 0.0  # of the stream (or container); 0 when unknown


@dataclass(frozen=True)
class FrameCount:
    """The source's frame count, and the lengths per-frame files (depth.npy, w2c) may have to match it.

    They may hold the announced count where decoding gave a tolerated few frames less.
    """

    n: int
    accepted: frozenset[int]

    def __contains__(self, length: int) -> bool:
        return length in self.accepted


@dataclass(frozen=True)
class Video:
    """Decoded frames at the working size, and what decoding learnt about the source."""

    frames: np.ndarray  # (T, h, w, 3) uint8 RGB at the working size
    index: np.ndarray  # (T,) int32 source frame number of each stored frame
    fps: float  # of the stored frames
    src_size: tuple[int, int]  # (W, H) before resizing
    count: FrameCount  # frames in the source, and the lengths of per-frame arrays that match it
    timestamps_s: np.ndarray | None = None  # (T,) seconds from the first decoded frame
    notes: tuple[str, ...] = ()
    src_fps: float = 0.0  # of the source frames; 0 when unknown
    spill_dir: str = ""  # the frames are in a file there (tasks/extract/spill.py); "" in memory


def subsample_stride(src_fps: float, target_fps: float | None) -> int:
    if not target_fps or not src_fps or target_fps >= src_fps:
        return 1
    return max(1, int(round(src_fps / target_fps)))


def short_frames_tolerated(announced: int) -> int:
    """Frames a container may announce without decoding them: 2% of the count rounded up, at most 5."""
    return min(MAX_SHORT_FRAMES, max(1, math.ceil(MAX_SHORT_FRACTION * announced)))


def working_size(width: int, height: int, max_width: int | None) -> tuple[int, int]:
    """(w, h) the frames are stored at: `max_width` wide with the aspect kept, never enlarged."""
    if not max_width or width <= max_width:
        return width, height
    return max_width, max(1, int(round(height * max_width / width)))


def check_enough_frames(where: Path, n_src: int, src_fps: float, cfg: DecodeConfig, min_frames: int) -> None:
    """Refuse an episode that keeps fewer than `min_frames` frames, saying which setting would keep enough."""
    stride = subsample_stride(src_fps, cfg.target_fps)
    subsampled = math.ceil(n_src / stride)
    if min(subsampled, cfg.max_frames) >= min_frames:
        return
    count = f"{n_src} frame{'' if n_src == 1 else 's'}"
    need = f"at least {min_frames} are needed (track.min_visible_frames: the shortest trace)"
    if n_src < min_frames:
        raise EpisodeInputError(f"{where}: {count}; {need}")
    causes = []
    if subsampled < min_frames:
        widest = (n_src - 1) // (min_frames - 1)  # the largest stride that still keeps min_frames
        fix = "null (every frame)" if widest <= 1 else f"{math.ceil(src_fps / widest * 100) / 100:g}"
        causes.append(
            f"decode.target_fps={cfg.target_fps:g} keeps {subsampled} of them (1 in {stride} at {src_fps:g} fps); "
            f"--set decode.target_fps={fix} keeps enough"
        )
    if cfg.max_frames < min_frames:
        causes.append(f"decode.max_frames={cfg.max_frames} keeps {cfg.max_frames}; --set decode.max_frames={min_frames}")
    raise EpisodeInputError(f"{where}: {count}, but {'; '.join(causes)}; {need}")


def cut_note(where: Path, n_src: int, index: list[int], stride: int, cfg: DecodeConfig) -> str | None:
    """What `decode.max_frames` cut off, for the episode row (status stays "ok"); None when nothing was cut.

    The tracks (dense (N, T) arrays) grow with the episode, its pixels do not (tasks/extract/spill.py), so a cap
    stays; it is never silent.
    """
    stored = math.ceil(n_src / stride)
    if stored <= cfg.max_frames:
        return None
    return (
        f"{where.name}: cut at decode.max_frames={cfg.max_frames}: stored frames 0-{len(index) - 1} (source frames "
        f"0-{index[-1]}) kept of {stored} ({n_src} source frames); the rest is not ingested "
        f"(--set decode.max_frames={stored} keeps all)"
    )


def iso_truncation(path: Path, size: int) -> str | None:
    """Why an MP4/MOV file is cut short, from its top-level box sizes alone; None if whole or not ISO media.

    FFmpeg only says "Invalid data found" for a file cut before its index, or fails mid-decode for
    one cut inside its frames; the box sizes name the real cause without decoding anything.
    """
    seen: set[bytes] = set()
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            head = fh.read(16)
            box, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if not (kind.isascii() and kind.decode("ascii").isprintable()) or (offset == 0 and kind not in _ISO_FIRST_BOXES):
                return None  # not (or no longer) a box structure: FFmpeg judges the rest
            if box == 1 and len(head) >= 16:
                box = int.from_bytes(head[8:16], "big")
            elif box == 0:
                box = size - offset  # "to the end of the file"
            if box < 8:
                return None
            if offset + box > size:
                return (
                    f"the file is truncated: its '{kind.decode()}' box at byte {offset} declares {box} bytes, "
                    f"only {size - offset} are there"
                )
            seen.add(kind)
            offset += box
    if seen and not seen & {b"moov", b"moof"}:
        return "the file is truncated or unfinished: it has no 'moov' box (the index of its frames)"
    return None


def _unreadable(path: Path, exc: Exception) -> str:
    """The cause of an FFmpeg refusal in words: a text file is named as one."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text.strip() and "\0" not in text:
        first = next(line for line in text.splitlines() if line.strip())
        return f"a text file (it starts {first.strip()[:40]!r}), not a video"
    return f"not a video FFmpeg can read ({getattr(exc, 'strerror', None) or exc})"


def probe_video(path: Path) -> VideoInfo:
    """Cheap checks before any frame is decoded: the file exists, is whole, and is a video (not an image)."""
    if not path.exists():
        raise EpisodeInputError(f"{path}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise EpisodeInputError(f"{path}: file is empty (0 bytes)")
    cut = iso_truncation(path, size)
    if cut:
        raise EpisodeInputError(f"{path}: {cut}")
    try:
        with av.open(str(path)) as container:
            fmt = container.format.name
            if fmt in _IMAGE_DEMUXERS or fmt.endswith("_pipe"):
                kind = fmt.removesuffix("_pipe").upper() if fmt.endswith("_pipe") else "still"
                raise EpisodeInputError(f"{path}: an image ({kind}), not a video")
            if not container.streams.video:
                held = ", ".join(f"{s.type} ({s.codec_context.name})" for s in container.streams)
                raise EpisodeInputError(f"{path}: no video stream" + (f"; it holds only {held}" if held else ""))
            s = container.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0.0)
            if s.duration and s.time_base:
                duration = float(s.duration * s.time_base)
            else:
                duration = container.duration / av.time_base if container.duration else 0.0
            return VideoInfo(int(s.codec_context.width), int(s.codec_context.height), int(s.frames or 0), fps, duration)
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{path}: {_unreadable(path, exc)}") from exc


def _timestamps(pts: list, time_base, index: list[int], where: Path) -> tuple[np.ndarray | None, str | None]:
    """Stored frames' times (s from the first frame) and a note when the frame rate varies; None without pts."""
    if not pts or any(p is None for p in pts) or time_base is None:
        return None, None
    t = (np.asarray(pts, np.float64) - pts[0]) * float(time_base)
    note = None
    dt = np.diff(t)
    if len(dt) >= 2:
        med = float(np.median(dt))
        if med > 0 and np.abs(dt - med).max() > VFR_SPREAD * med:
            note = (
                f"{where.name}: variable frame rate (frame intervals {dt.min() * 1e3:.0f}-{dt.max() * 1e3:.0f} ms, "
                f"median {med * 1e3:.0f} ms); fps is the average"
            )
    return t[index], note


def check_window(path: Path, info: VideoInfo, window: tuple[float, float]) -> None:
    """Refuse a time window [start, end) s that is empty or reaches outside the file (half a frame of slack)."""
    start, end = window
    slack = 0.5 / info.fps if info.fps else 1e-3
    if not (math.isfinite(start) and math.isfinite(end)) or start < -slack or end - start < slack:
        raise EpisodeInputError(f"{path}: the time range [{start:g}, {end:g}) s is not a span of the video")
    if info.duration_s and end > info.duration_s + slack:
        raise EpisodeInputError(
            f"{path}: the time range [{start:g}, {end:g}) s lies outside the file, which holds "
            f"{info.duration_s:g} s ({info.frames or 'an unknown number of'} frames)"
        )


def _seek(container, stream, start_s: float) -> None:
    """Go to the keyframe at or before `start_s` (frames before the window are then decoded and dropped)."""
    if start_s > 0 and stream.time_base:
        container.seek(int(start_s / stream.time_base), stream=stream, backward=True)


def read_video(path: Path, cfg: DecodeConfig, min_frames: int = 1, window: tuple[float, float] | None = None) -> Video:
    """Decode with PyAV, scaling each kept frame to the working size as it comes (never holding full-size frames).

    With `window` = (start, end) seconds only the frames in [start, end) are read, numbered from 0.
    """
    info = probe_video(path)
    if window is not None:
        check_window(path, info, window)
    return _decode_into(FrameSink(cfg.spill_mb * MiB, cfg.spill_dir), path, cfg, min_frames, window)


def _decode_into(frames: FrameSink, path: Path, cfg: DecodeConfig, min_frames: int, window) -> Video:
    index: list[int] = []
    pts: list = []
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = DECODE_THREADS  # 0 = FFmpeg decides; Ray workers ask for 1
            src_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            expected = int(stream.frames or 0) if window is None else 0  # a window's count is its caller's check
            stride = subsample_stride(src_fps, cfg.target_fps)
            half = 0.5 / src_fps if src_fps else 1e-3
            if window is not None:
                _seek(container, stream, window[0] - half)
            # One reformatter for the whole video: `frame.to_ndarray(format=...)` builds a new
            # swscale context per frame, which costs more than decoding a small frame.
            rgb = VideoReformatter()
            src_size = size = (0, 0)
            try:
                for frame in container.decode(stream):
                    if window is not None:
                        t = frame.time
                        if t is None:
                            raise EpisodeInputError(f"{path}: frames without timestamps; a time range cannot be cut")
                        if t < window[0] - half:
                            continue
                        if t >= window[1] - half:
                            break
                    if n == 0:
                        src_size = (frame.width, frame.height)
                        size = working_size(*src_size, cfg.max_width)
                    elif (frame.width, frame.height) != src_size:
                        raise EpisodeInputError(
                            f"{path}: frame size changes from {src_size[0]}x{src_size[1]} to "
                            f"{frame.width}x{frame.height} at frame {n}"
                        )
                    pts.append(frame.pts)
                    if n % stride == 0 and len(frames) < cfg.max_frames:
                        small = rgb.reformat(
                            frame, width=size[0], height=size[1], format="rgb24", interpolation=Interpolation.AREA
                        )
                        frames.append(small.to_ndarray())
                        index.append(n)
                    n += 1
            except (av.error.FFmpegError, UnicodeDecodeError) as exc:
                if n == 0:
                    raise
                of = f" of {expected}" if expected else ""
                raise EpisodeInputError(
                    f"{path}: decoding stops after frame {n}{of} ({getattr(exc, 'strerror', None) or exc}); "
                    "the file is truncated or damaged"
                ) from exc
            time_base = stream.time_base
    except EpisodeInputError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{path}: {_unreadable(path, exc)}") from exc
    if not len(frames):
        span = "" if window is None else f" in [{window[0]:g}, {window[1]:g}) s"
        raise EpisodeInputError(f"{path}: no decodable frames{span} (the file is truncated or not a video)")
    notes = []
    lengths = {n}
    if expected > n:
        if expected - n > short_frames_tolerated(expected):
            raise EpisodeInputError(
                f"{path}: decoded {n} of the {expected} frames its header announces; the file is truncated or damaged"
            )
        lengths.add(expected)
        notes.append(
            f"{path.name}: decoded {n} of the {expected} frames the container announces (edit list or dropped "
            f"frames; up to {short_frames_tolerated(expected)} missing are tolerated)"
        )
    check_enough_frames(path, n, src_fps, cfg, min_frames)
    times, vfr = _timestamps(pts, time_base, index, path)
    if vfr:
        notes.append(vfr)
    if cut := cut_note(path, n, index, stride, cfg):
        notes.append(cut)
    return Video(
        frames=frames.finish(),
        index=np.asarray(index, dtype=np.int32),
        fps=src_fps / stride if src_fps else 0.0,
        src_size=src_size,
        count=FrameCount(n, frozenset(lengths)),
        timestamps_s=times,
        notes=tuple(notes),
        src_fps=src_fps,
        spill_dir=frames.spill_dir,
    )


def frame_files(path: Path) -> list[Path]:
    if not path.is_dir():
        raise EpisodeInputError(f"{path.parent}: neither video.mp4 nor a frames/ directory")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise EpisodeInputError(f"{path}: no .jpg/.png frames")
    return files


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EpisodeInputError(f"{path}: cannot read image")
    return img


def read_frame_dir(path: Path, cfg: DecodeConfig, fps: float, min_frames: int = 1) -> Video:
    """frames/*.jpg|png in name order, each scaled to the working size as it is read."""
    files = frame_files(path)
    check_enough_frames(path, len(files), fps, cfg, min_frames)
    stride = subsample_stride(fps, cfg.target_fps)
    keep = list(range(0, len(files), stride))[: cfg.max_frames]
    frames = FrameSink(cfg.spill_mb * MiB, cfg.spill_dir)
    src_size = size = (0, 0)
    for i in keep:
        img = read_image(files[i])
        if not len(frames):
            src_size = (img.shape[1], img.shape[0])
            size = working_size(*src_size, cfg.max_width)
        elif (img.shape[1], img.shape[0]) != src_size:
            raise EpisodeInputError(f"{path}: frames have different sizes ({files[i].name} differs from {files[0].name})")
        if size != src_size:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    cut = cut_note(path, len(files), keep, stride, cfg)
    return Video(
        spill_dir=frames.spill_dir,
        frames=frames.finish(),
        index=np.asarray(keep, dtype=np.int32),
        fps=fps / stride if fps else 0.0,
        src_size=src_size,
        count=FrameCount(len(files), frozenset({len(files)})),
        src_fps=fps,
        notes=(cut,) if cut else (),
    )
