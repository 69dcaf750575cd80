"""The files beside an episode's video (input format 2): depth.npy, cameras.npz, meta.json, actions.npy, states.npy.

Headers are checked before anything is decoded (stage 0's precheck); every refusal names the file and
the cause. Per-frame arrays may match the decoded or the announced frame count (see video.FrameCount).
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import cv2
import numpy as np

from tasks.errors import EpisodeInputError
from tasks.extract.intrinsics import check_pinhole
from tasks.extract.spill import empty_like_episode, release
from tasks.extract.video import FrameCount
from tasks.types import EpisodeDemo

_NPY_MAGIC = b"\x93NUMPY"


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
    path: Path, count: FrameCount, index: np.ndarray, src_hw: tuple[int, int], size: tuple[int, int],
    spill_dir: str = "",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """depth.npy (T,H,W) meters -> float32 (T', h, w) at the kept frames and working size, NaN where unknown.

    Also per stored frame how many source pixels held +-inf or negative values (not "unknown" markers
    like NaN and 0 but broken data): the depth stage decides how much of that a `given` episode may hold.
    """
    check_depth_header(path, count, src_hw)
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    step = max(1, (16 << 20) // max(1, src_hw[0] * src_hw[1] * 4))  # ~16 MB of source depth at a time (a few copies)
    def read(a: int) -> np.ndarray:
        block = np.array(arr[index[a : a + step]])
        release(arr)  # the mapped source pages go as soon as they are copied
        return block

    return depth_in_meters((read(a) for a in range(0, len(index), step)), len(index), src_hw, size, spill_dir=spill_dir)


def depth_in_meters(
    blocks, n: int, src_hw: tuple[int, int], size: tuple[int, int], scale: float = 1.0, spill_dir: str = ""
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Blocks of source depth frames (k, H, W) in stored units -> float32 (n, h, w) meters at the working size,
    NaN where unknown (NaN, +-inf or <= 0), with per frame the count of broken (+-inf, negative) source pixels."""
    out = empty_like_episode(spill_dir, "depth", (n, size[1], size[0]), np.float32)
    infinite = np.zeros(n, np.int64)
    negative = np.zeros(n, np.int64)
    a = 0
    for block in blocks:
        d = np.array(block, dtype=np.float32) * np.float32(scale)
        b = a + len(d)
        infinite[a:b] = np.count_nonzero(np.isinf(d), axis=(1, 2))
        negative[a:b] = np.count_nonzero(d < 0, axis=(1, 2))
        d[~((d > 0) & (d < np.inf))] = np.nan  # NaN, +-inf or <= 0 (NaN compares False)
        if size != (src_hw[1], src_hw[0]):
            d = np.stack([cv2.resize(x, size, interpolation=cv2.INTER_NEAREST) for x in d])
        out[a:b] = d
        release(out)
        a = b
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


def meta_fps(meta: dict, where: Path) -> float:
    try:
        fps = float(meta.get("fps", 0) or 0)
    except (TypeError, ValueError):
        raise EpisodeInputError(f"{where}: fps must be a number, got {meta['fps']!r}") from None
    if not (math.isfinite(fps) and fps >= 0):
        raise EpisodeInputError(f"{where}: fps must be a positive number, got {meta['fps']!r}")
    return fps


DEMO_FILES = ("states.npy", "actions.npy")  # (S, D) each, one step per source frame


def check_demo_headers(folder: Path, count: FrameCount | None) -> int | None:
    """Steps of the demonstration in `folder` (None without one), from the .npy headers alone.

    Each file present must be a numeric (S,) or (S, D) array with one step per source frame, and both the
    same length, or the episode is refused naming the file (a demonstration off by frames is misaligned).
    """
    steps: dict[str, int] = {}
    for name in DEMO_FILES:
        path = folder / name
        if not path.exists():
            continue
        shape, dtype = npy_header(path)
        if len(shape) not in (1, 2) or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
            raise EpisodeInputError(f"{path}: {dtype} array of shape {shape}; expected numbers (S, D), one row per frame")
        if count is not None and shape[0] not in count:
            raise EpisodeInputError(
                f"{path}: {shape[0]} steps for a video of {count.n} frames; it needs one row per source frame"
            )
        steps[name] = shape[0]
    if len(set(steps.values())) > 1:
        raise EpisodeInputError(f"{folder}: states.npy has {steps['states.npy']} steps, actions.npy {steps['actions.npy']}")
    return next(iter(steps.values()), None)


def read_demo(folder: Path, count: FrameCount, fps: float) -> EpisodeDemo | None:
    """states.npy / actions.npy as float32 (S, D) (a missing one as (S, 0)); None when neither exists.

    Step i is source frame i, at i / fps seconds (NaN when the rate is unknown).
    """
    steps = check_demo_headers(folder, count)
    if steps is None:
        return None
    arrays = {}
    for name in DEMO_FILES:
        path = folder / name
        a = np.load(path, allow_pickle=False).astype(np.float32) if path.exists() else np.zeros((steps, 0), np.float32)
        arrays[name] = a if a.ndim == 2 else a[:, None]
    times = np.arange(steps, dtype=np.float64) / fps if fps else np.full(steps, np.nan)
    return EpisodeDemo(states=arrays["states.npy"], actions=arrays["actions.npy"], timestamps_s=times, fps=float(fps))
