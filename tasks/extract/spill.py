"""Per-pixel arrays of a long episode on local disk, mapped, so memory holds only the frames in use.

A 30-minute video at 10 fps is 18,000 frames: at 640x360 its frames, depth, edge-cleaned depth and grey images
(12 bytes a pixel) take about 50 GB. Once an episode's frames pass `decode.spill_mb`, decode writes them to a file
in a directory of its own (under `decode.spill_dir`, the system's temp directory by default) and each later stage
makes its per-pixel arrays there too (`empty_like_episode`). The stages read and write them a block of frames
at a time and `release` the pages they touched, so the resident memory is that of a block; the page cache holds
the rest and the kernel writes it back or drops it as memory is needed.

A spilled array pickles as its file's path, not its bytes, so a Ray model actor on the same node maps the very
same file instead of receiving a copy through the object store. On a cluster of several nodes `spill_dir` must be
storage every node mounts. The directory goes when the episode has been written (`remove_spill`); one left by a
process that died is removed by the next spilled episode on that node.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

BLOCK_FRAMES = 64  # frames a stage handles between two `release`s


class SpilledArray(np.memmap):
    """A whole array in a spill file; slices and results of arithmetic are ordinary (mapped or in-memory) arrays."""

    def __reduce_ex__(self, protocol):
        if getattr(self, "whole", False):
            return open_spilled, (str(self.filename), self.dtype.str, self.shape)
        return np.asarray(self).__reduce_ex__(protocol)


def _mapped(path, dtype, shape: tuple[int, ...], mode: str = "r+") -> SpilledArray:
    arr = SpilledArray(path, dtype=np.dtype(dtype), mode=mode, shape=tuple(shape))
    arr.whole = True
    return arr


def open_spilled(path: str, dtype: str, shape: tuple[int, ...]) -> SpilledArray:
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: a spilled episode array is not on this node; set decode.spill_dir to storage every node mounts"
        )
    return _mapped(path, dtype, shape)


PREFIX = "mu0-spill-"


def new_spill_dir(root: str = "") -> str:
    """A fresh directory for one episode's arrays, named after this process; those of processes that are gone (a
    worker killed mid-episode) are removed first."""
    base = _base(root)
    base.mkdir(parents=True, exist_ok=True)
    for old in base.glob(f"{PREFIX}*-*"):
        pid = old.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)


@contextlib.contextmanager
def removed_on_error(root: str = ""):
    """Spill directories this process makes inside the block are removed if it raises (a refused episode keeps
    nothing on disk, wherever in decoding it was refused)."""
    base = _base(root)
    mine = f"{PREFIX}{os.getpid()}-*"
    before = set(base.glob(mine))
    try:
        yield
    except BaseException:
        for d in set(base.glob(mine)) - before:
            shutil.rmtree(d, ignore_errors=True)
        raise


def _base(root: str) -> Path:
    return Path(root or tempfile.gettempdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def spilled_empty(spill_dir: str, name: str, shape: tuple[int, ...], dtype) -> SpilledArray:
    """An uninitialised (zero-filled) array in a new file of `spill_dir`."""
    return _mapped(Path(spill_dir) / f"{name}-{os.urandom(4).hex()}.bin", dtype, shape, mode="w+")


def empty_like_episode(spill_dir: str, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Where a stage puts a new per-frame array: in the episode's spill directory if it has one, else in memory."""
    return spilled_empty(spill_dir, name, shape, dtype) if spill_dir else np.empty(shape, dtype)


def release(*arrays) -> None:
    """Drop the pages of mapped arrays from this process (their data stays in the file); others are left alone."""
    for a in arrays:
        m = getattr(a, "_mmap", None)
        if isinstance(a, np.memmap) and m is not None:
            m.madvise(mmap.MADV_DONTNEED)


def blocks(n: int, size: int = BLOCK_FRAMES):
    """(lo, hi) frame ranges of at most `size` frames covering [0, n)."""
    return ((lo, min(lo + size, n)) for lo in range(0, n, size))


def frames_releasing(n: int, *arrays):
    """range(n) for a frame-by-frame loop over `arrays`, dropping their mapped pages every BLOCK_FRAMES frames and
    at the end."""
    for t in range(n):
        yield t
        if (t + 1) % BLOCK_FRAMES == 0:
            release(*arrays)
    release(*arrays)


def remove_spill(spill_dir: str) -> None:
    """Remove an episode's spill directory; arrays still mapped stay readable until they are dropped."""
    if spill_dir:
        shutil.rmtree(spill_dir, ignore_errors=True)


class FrameSink:
    """Frames as they are decoded: kept in memory until they pass `limit_bytes`, then written to a spill file."""

    def __init__(self, limit_bytes: float, spill_root: str = ""):
        self.limit, self.root = limit_bytes, spill_root
        self.kept: list[np.ndarray] = []
        self.n, self.nbytes, self.shape = 0, 0, None
        self.spill_dir, self._file = "", None

    def __len__(self) -> int:
        return self.n

    def append(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame)
        if self.shape is None:
            self.shape, self.dtype = frame.shape, frame.dtype
        self.n += 1
        self.nbytes += frame.nbytes
        if self._file is None and self.nbytes > self.limit:
            self.spill_dir = new_spill_dir(self.root)
            self._path = Path(self.spill_dir) / "frames.bin"
            self._file = open(self._path, "wb")
            for f in self.kept:
                self._file.write(f.tobytes())
            self.kept = []
        if self._file is not None:
            self._file.write(frame.tobytes())
        else:
            self.kept.append(frame)

    def finish(self) -> np.ndarray:
        """All frames as one (n, ...) array: stacked in memory, or the spill file mapped."""
        if self._file is None:
            out = np.stack(self.kept)
            self.kept = []
            return out
        self._file.close()
        return _mapped(self._path, self.dtype, (self.n, *self.shape))
