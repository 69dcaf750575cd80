"""Stage 0: read an episode's files (video, depth, cameras, meta) and subsample to the preset's rate.

Every check names the file and the cause, so a bad input becomes a readable `failed` row. The cheap
ones (container and stream header, depth.npy's header, cameras.npz, meta.json, enough frames) run
in `precheck`, before a frame is decoded, and again on what decoding finds.

Frames are scaled to the working width (`DecodeConfig.max_width`) as each one is decoded, so a 4K
source is never held at full resolution; K follows with the pixel-centre convention and given depth
(at the source resolution) is resized frame by frame, nearest.

Tolerated, with a note: a container announcing a few more frames than it decodes (edit lists and
dropped frames make real phone clips do this; up to 2% of the announced count rounded up, at most
5; more is a truncated file), and a variable frame rate. Notes reach the episodes row as
`errors["decode_note"]` while the status stays "ok" (caption fall-backs do the same under "captions").
Each stored frame's time (seconds from the first decoded frame) is kept in `ep.meta["timestamps_s"]`.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from tasks.config import DecodeConfig, IngestConfig
from tasks.errors import EpisodeInputError
from tasks.extract.intrinsics import check_pinhole, intrinsics_from_metadata, resize_intrinsics, video_metadata
from tasks.stage import Stage
from tasks.types import Episode, EpisodeSource

DECODE_THREADS = int(os.environ.get("MU0_DECODE_THREADS", "0"))
NOTE_KEY = "decode_note"  # errors[NOTE_KEY]: what decode tolerated in an episode that stays "ok"
MAX_SHORT_FRACTION = 0.02  # announced-but-missing frames tolerated, as a share of the announced count...
MAX_SHORT_FRAMES = 5  # ...and at most this many (at least 1 always)
VFR_SPREAD = 0.25  # frame intervals further than this from their median make a variable frame rate
_IMAGE_DEMUXERS = {"image2", "image2pipe"}  # plus every "<codec>_pipe": FFmpeg's single-image readers
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp"}
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class DecodeSettings:
    """What stage 0 reads from the ingest config: its own section and the shortest episode worth decoding."""

    decode: DecodeConfig
    min_frames: int = 1  # TrackConfig.min_visible_frames: fewer stored frames cannot hold a single trace


@dataclass(frozen=True)
class VideoInfo:
    """What a container's header says about its first video stream (before any frame is decoded)."""

    width: int
    height: int
    frames: int  # announced frame count; 0 when the container does not say
    fps: float


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
            return VideoInfo(int(s.codec_context.width), int(s.codec_context.height), int(s.frames or 0), fps)
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


def read_video(path: Path, cfg: DecodeConfig, min_frames: int = 1) -> Video:
    """Decode with PyAV, scaling each kept frame to the working size as it comes (never holding full-size frames)."""
    probe_video(path)
    frames: list[np.ndarray] = []
    index: list[int] = []
    pts: list = []
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = DECODE_THREADS  # 0 = FFmpeg decides; Ray workers ask for 1
            src_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            expected = int(stream.frames or 0)
            stride = subsample_stride(src_fps, cfg.target_fps)
            # One reformatter for the whole video: `frame.to_ndarray(format=...)` builds a new
            # swscale context per frame, which costs more than decoding a small frame.
            rgb = VideoReformatter()
            src_size = size = (0, 0)
            try:
                for frame in container.decode(stream):
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
    if not frames:
        raise EpisodeInputError(f"{path}: no decodable frames (the file is truncated or not a video)")
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
    return Video(
        frames=np.stack(frames),
        index=np.asarray(index, dtype=np.int32),
        fps=src_fps / stride if src_fps else 0.0,
        src_size=src_size,
        count=FrameCount(n, frozenset(lengths)),
        timestamps_s=times,
        notes=tuple(notes),
    )


def _frame_files(path: Path) -> list[Path]:
    if not path.is_dir():
        raise EpisodeInputError(f"{path.parent}: neither video.mp4 nor a frames/ directory")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not files:
        raise EpisodeInputError(f"{path}: no .jpg/.png frames")
    return files


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EpisodeInputError(f"{path}: cannot read image")
    return img


def read_frame_dir(path: Path, cfg: DecodeConfig, fps: float, min_frames: int = 1) -> Video:
    """frames/*.jpg|png in name order, each scaled to the working size as it is read."""
    files = _frame_files(path)
    check_enough_frames(path, len(files), fps, cfg, min_frames)
    stride = subsample_stride(fps, cfg.target_fps)
    keep = list(range(0, len(files), stride))[: cfg.max_frames]
    frames = []
    src_size = size = (0, 0)
    for i in keep:
        img = _read_image(files[i])
        if not frames:
            src_size = (img.shape[1], img.shape[0])
            size = working_size(*src_size, cfg.max_width)
        elif (img.shape[1], img.shape[0]) != src_size:
            raise EpisodeInputError(f"{path}: frames have different sizes ({files[i].name} differs from {files[0].name})")
        if size != src_size:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return Video(
        frames=np.stack(frames),
        index=np.asarray(keep, dtype=np.int32),
        fps=fps / stride if fps else 0.0,
        src_size=src_size,
        count=FrameCount(len(files), frozenset({len(files)})),
    )


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header (no data is read); refuses what is not a whole numeric array."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(6) != _NPY_MAGIC:
            what = "it is empty" if size == 0 else "no NPY header"
            raise EpisodeInputError(f"{path}: not a .npy array ({what}); save it with numpy.save")
        fh.seek(0)
        try:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(fh)
        except (ValueError, SyntaxError) as exc:
            raise EpisodeInputError(f"{path}: unreadable .npy header ({exc})") from exc
        data_start = fh.tell()
    if dtype.hasobject:
        raise EpisodeInputError(f"{path}: holds pickled Python objects (dtype {dtype}); it must be a float array")
    need = data_start + math.prod(shape) * dtype.itemsize
    if size < need:
        raise EpisodeInputError(
            f"{path}: truncated: its header describes a {shape} {dtype} array ({need} bytes), the file has {size}"
        )
    return tuple(shape), dtype


def check_depth_header(path: Path, count: FrameCount | None, src_hw: tuple[int, int]) -> None:
    """depth.npy must be a (T, H, W) float array at the video's size, with one frame per source frame."""
    shape, dtype = npy_header(path)
    if len(shape) != 3 or shape[1:] != src_hw or (count is not None and shape[0] not in count):
        t = count.n if count else "T"
        raise EpisodeInputError(
            f"{path}: depth has shape {shape}, expected (T, H, W) = {(t, *src_hw)} to match the video"
        )
    if not np.issubdtype(dtype, np.floating):
        raise EpisodeInputError(f"{path}: depth dtype {dtype}; expected float16/float32 meters")


def read_depth(
    path: Path, count: FrameCount, index: np.ndarray, src_hw: tuple[int, int], size: tuple[int, int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """depth.npy (T,H,W) meters -> float32 (T', h, w) at the kept frames and working size, NaN where unknown.

    Also per stored frame how many source pixels held +-inf or negative values (not "unknown" markers
    like NaN and 0 but broken data): the depth stage decides how much of that a `given` episode may hold.
    """
    check_depth_header(path, count, src_hw)
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    resize = size != (src_hw[1], src_hw[0])
    out = np.empty((len(index), size[1], size[0]), np.float32)
    infinite = np.zeros(len(index), np.int64)
    negative = np.zeros(len(index), np.int64)
    step = max(1, (64 << 20) // max(1, src_hw[0] * src_hw[1] * 4))  # ~64 MB of source depth at a time
    for a in range(0, len(index), step):
        d = np.array(arr[index[a : a + step]], dtype=np.float32)
        infinite[a : a + step] = np.count_nonzero(np.isinf(d), axis=(1, 2))
        negative[a : a + step] = np.count_nonzero(d < 0, axis=(1, 2))
        d[~((d > 0) & (d < np.inf))] = np.nan  # NaN, +-inf or <= 0 (NaN compares False)
        if resize:
            d = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_NEAREST) for x in d])
        out[a : a + step] = d
    return out, {"infinite": infinite, "negative": negative, "pixels": np.int64(src_hw[0] * src_hw[1])}


def _npz(path: Path):
    if not zipfile.is_zipfile(path):
        raise EpisodeInputError(f"{path}: not an .npz archive; save it with numpy.savez(path, K=..., w2c=...)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise EpisodeInputError(f"{path}: cannot read the archive ({exc})") from exc


def read_cameras(
    path: Path, count: FrameCount | None, index: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """cameras.npz: K (3,3) or constant (T,3,3), optional w2c (T,4,4) rigid, one per source frame."""
    cams = _npz(path)
    if "K" not in cams.files:
        raise EpisodeInputError(f"{path}: no K in the archive (it holds {', '.join(cams.files) or 'nothing'})")
    try:
        K = np.asarray(cams["K"], dtype=np.float64)
        w2c = np.asarray(cams["w2c"], dtype=np.float64) if "w2c" in cams.files else None
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
        why = "holds pickled Python objects" if "allow_pickle" in str(exc) else str(exc)
        raise EpisodeInputError(f"{path}: cannot read K/w2c ({why}); they must be float arrays") from exc
    if K.ndim == 3 and K.shape[1:] == (3, 3) and len(K) > 0:
        if not np.allclose(K, K[0], rtol=1e-4):
            raise EpisodeInputError(f"{path}: per-frame intrinsics that change over time are not supported")
        K = K[0]
    check_pinhole(K, str(path), accepted="(3,3) or (T,3,3) pinhole matrix")
    if w2c is None:
        return K, None
    expect = "one per source frame is needed"
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
        raise EpisodeInputError(f"{path}: w2c has shape {w2c.shape}, expected (T, 4, 4); {expect}")
    if count is not None and len(w2c) not in count:
        raise EpisodeInputError(f"{path}: w2c holds {len(w2c)} camera poses for a video of {count.n} frames; {expect}")
    if not np.isfinite(w2c).all():
        bad = np.flatnonzero(~np.isfinite(w2c).all(axis=(1, 2)))
        raise EpisodeInputError(f"{path}: w2c is not finite in {len(bad)} frames (first: frame {bad[0]})")
    R = w2c[:, :3, :3]
    err = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = np.flatnonzero((err > 1e-3) | (det < 0))
    if len(bad):
        i = bad[0]
        why = f"det R = {det[i]:.3g}, a reflection" if det[i] < 0 else f"max |R R^T - I| = {err[i]:.3g}"
        raise EpisodeInputError(
            f"{path}: w2c rotations are not orthonormal in {len(bad)} of {len(w2c)} frames (first: frame {i}, {why}); "
            "each w2c must be a rigid [R t; 0 0 0 1] transform"
        )
    if np.abs(w2c[:, 3] - [0, 0, 0, 1]).max() > 1e-6:
        raise EpisodeInputError(f"{path}: w2c's last rows must be [0 0 0 1] (rigid transforms)")
    return K, (w2c if index is None else w2c[index])


def load_meta(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EpisodeInputError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise EpisodeInputError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def _meta_fps(meta: dict, where: Path) -> float:
    try:
        fps = float(meta.get("fps", 0) or 0)
    except (TypeError, ValueError):
        raise EpisodeInputError(f"{where}: fps must be a number, got {meta['fps']!r}") from None
    if not (math.isfinite(fps) and fps >= 0):
        raise EpisodeInputError(f"{where}: fps must be a positive number, got {meta['fps']!r}")
    return fps


def precheck_source(src: EpisodeSource, cfg: DecodeConfig, min_frames: int = 1) -> None:
    """Every refusal that needs no decoding: headers of the video and depth.npy, cameras.npz, meta.json."""
    path = Path(src.uri)
    if src.kind == "video":
        info = probe_video(path)
        if info.frames:
            check_enough_frames(path, info.frames, info.fps, cfg, min_frames)
        return
    meta = load_meta(path / "meta.json")
    video = path / "video.mp4"
    if video.exists() or video.is_symlink():
        info = probe_video(video)
        src_hw = (info.height, info.width)
        tol = short_frames_tolerated(info.frames)
        count = FrameCount(info.frames, frozenset(range(info.frames - tol, info.frames + tol + 1))) if info.frames else None
        if info.frames:
            check_enough_frames(video, info.frames, info.fps, cfg, min_frames)
    else:
        files = _frame_files(path / "frames")
        check_enough_frames(path / "frames", len(files), _meta_fps(meta, path / "meta.json"), cfg, min_frames)
        src_hw = _read_image(files[0]).shape[:2]
        count = FrameCount(len(files), frozenset({len(files)}))
    if (path / "depth.npy").exists():
        check_depth_header(path / "depth.npy", count, src_hw)
    if (path / "cameras.npz").exists():
        read_cameras(path / "cameras.npz", count)


def decode(src: EpisodeSource, cfg: DecodeConfig, min_frames: int = 1) -> Episode:
    """Read one episode (input format 1 or 2) into an Episode with frames and whatever depth and cameras it has.

    Depth is read leniently (any share of unknown pixels): whether given depth is required, and how
    complete it must be, is the depth stage's rule; likewise given cameras for the pose stage.
    """
    path = Path(src.uri)
    if src.kind == "video":
        video = read_video(path, cfg, min_frames)
        size = (video.frames.shape[2], video.frames.shape[1])
        # Depth and poses are estimated later; intrinsics come from the container's tags if it has any.
        found = intrinsics_from_metadata({}, video_metadata(path), *video.src_size, where=str(path))
        K, meta = (resize_intrinsics(found[0], video.src_size, size), {"intrinsics": found[1]}) if found else (None, {})
        return _episode(src, video, meta, K=K)

    meta = load_meta(path / "meta.json")
    meta_fps = _meta_fps(meta, path / "meta.json")
    if (path / "video.mp4").exists() or (path / "video.mp4").is_symlink():
        video = read_video(path / "video.mp4", cfg, min_frames)
    else:
        video = read_frame_dir(path / "frames", cfg, meta_fps, min_frames)
    if not video.fps and meta_fps:
        index = video.index
        video = replace(video, fps=meta_fps / (index[1] - index[0] if len(index) > 1 else 1))
    src_hw = (video.src_size[1], video.src_size[0])
    size = (video.frames.shape[2], video.frames.shape[1])

    depth = None
    if (path / "depth.npy").exists():
        depth, corrupt = read_depth(path / "depth.npy", video.count, video.index, src_hw, size)
        meta = {**meta, "depth_corrupt_px": corrupt}
    K = w2c = None
    if (path / "cameras.npz").exists():
        K, w2c = read_cameras(path / "cameras.npz", video.count, video.index)
        meta = {**meta, "intrinsics": "cameras.npz"}
    else:
        mp4 = path / "video.mp4"
        tags = video_metadata(mp4) if mp4.exists() else {}
        found = intrinsics_from_metadata(meta, tags, *video.src_size, where=str(path / "meta.json"))
        if found:
            K, meta = found[0], {**meta, "intrinsics": found[1]}
    if K is not None:
        K = resize_intrinsics(K, video.src_size, size)
    return _episode(src, video, meta, K=K, depth=depth, w2c=w2c)


def _episode(src: EpisodeSource, video: Video, meta: dict, **arrays) -> Episode:
    if video.timestamps_s is not None:
        meta = {**meta, "timestamps_s": video.timestamps_s.round(6).tolist()}
    depth, w2c = arrays.get("depth"), arrays.get("w2c")
    return Episode(
        source=src,
        frames=video.frames,
        frame_index=video.index,
        fps=video.fps,
        depth=depth,
        K=arrays.get("K"),
        w2c=w2c,
        depth_source="given" if depth is not None else "",
        pose_source="given" if w2c is not None else "",
        meta=meta,
        errors={NOTE_KEY: "; ".join(video.notes)} if video.notes else {},
    )


class Decode(Stage[DecodeSettings]):
    """Stage 0 (docs/method.md#stage-0-decode-and-subsample): frames, given depth and cameras, metadata."""

    name = "decode"

    def settings(self, cfg: IngestConfig) -> DecodeSettings:
        return DecodeSettings(cfg.decode, cfg.track.min_visible_frames)

    def precheck(self, src: EpisodeSource, settings: DecodeSettings) -> None:
        precheck_source(src, settings.decode, settings.min_frames)

    def run(self, ep: Episode, settings: DecodeSettings) -> Episode:
        return decode(ep.source, settings.decode, settings.min_frames)
