"""Chunks of a video for progressive tracking: which frames are in memory at once, and where they come from.

A chunk holds `chunk_frames` frames, the first `chunk_overlap` of them shared with the chunk before (docs/
method.md#stage-3-tracking). The tracker reads frames through a `Window` indexed by absolute frame number,
so the same code runs on a whole episode held in memory (`EpisodeFrames`, slices without copies) and on a
source that makes or decodes each chunk when asked (the long-video benchmark), whose memory then stays
that of one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tasks.extract.spill import release
from tasks.types import Episode


@dataclass(frozen=True)
class Window:
    """Frames [lo, lo + len(gray)) of a video: grey (n,H,W) uint8, edge-cleaned depth (n,H,W) m, w2c (n,4,4)."""

    lo: int
    gray_: np.ndarray
    depth_: np.ndarray
    w2c_: np.ndarray
    K: np.ndarray
    frames_: np.ndarray | None = None  # (n,H,W,3) uint8 RGB, for trackers that read colour (CoTracker)
    pose_slack_m: float = 0.0  # how far the camera poses may move a static point between frames (0: given poses)

    @property
    def hi(self) -> int:
        return self.lo + len(self.gray_)

    def _at(self, t: int) -> int:
        if not self.lo <= t < self.hi:
            raise IndexError(f"frame {t} is outside the chunk in memory [{self.lo}, {self.hi})")
        return t - self.lo

    def gray(self, t: int) -> np.ndarray:
        return self.gray_[self._at(t)]

    def depth(self, t: int) -> np.ndarray:
        return self.depth_[self._at(t)]

    def w2c(self, t: int) -> np.ndarray:
        return self.w2c_[self._at(t)]

    def frames(self, a: int, b: int) -> np.ndarray:
        """RGB frames [a, b) (n,H,W,3)."""
        return self.frames_[self._at(a) : self._at(b - 1) + 1]


class FrameSource(Protocol):
    """What the progressive trackers read: the video's length and size, and one window of frames at a time."""

    n_frames: int
    image_size: tuple[int, int]  # (W, H)

    def window(self, lo: int, hi: int) -> Window: ...


class EpisodeFrames:
    """An episode's own arrays (the ingest pipeline's case): windows are views, nothing is copied; a spilled
    episode's mapped pages are dropped as the next window is taken."""

    def __init__(self, ep: Episode, rgb: bool = False, pose_slack_m: float = 0.0):
        self.ep, self.rgb, self.pose_slack_m = ep, rgb, pose_slack_m
        self.n_frames, self.image_size = ep.n_frames, ep.image_size

    def window(self, lo: int, hi: int) -> Window:
        ep = self.ep
        release(ep.gray, ep.clean_depth, ep.frames)  # a spilled episode: the chunk before leaves memory
        rgb = ep.frames[lo:hi] if self.rgb else None
        return Window(lo, ep.gray[lo:hi], ep.clean_depth[lo:hi], ep.w2c[lo:hi], ep.K, rgb, self.pose_slack_m)


@dataclass(frozen=True)
class Chunk:
    """Chunk k: its new frames [new, hi) and the frames [lo, hi) in memory while it is tracked."""

    lo: int
    new: int
    hi: int


def chunk_spans(n_frames: int, chunk_frames: int, overlap: int, keep_back: int = 0) -> list[Chunk]:
    """The chunks of a video of `n_frames`: each `chunk_frames` long, sharing `overlap` with the one before.

    `keep_back` keeps at least that many earlier frames in memory too (LK re-acquires a lost point from its
    last sighting, up to `max_gap_frames` back). One chunk when `chunk_frames >= n_frames`.
    """
    if overlap >= chunk_frames:
        raise ValueError(f"track.chunk_overlap ({overlap}) must be smaller than track.chunk_frames ({chunk_frames})")
    back = max(overlap, keep_back)
    out, new = [], 0
    while new < n_frames:
        hi = min(n_frames, new + (chunk_frames if new == 0 else chunk_frames - overlap))
        out.append(Chunk(max(0, new - back), new, hi))
        new = hi
    return out
