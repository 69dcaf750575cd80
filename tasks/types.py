"""Typed records that flow through the pipeline stages.

An `Episode` is built by `decode`, then each stage returns a copy with more fields filled
(`Stage.run(ep, settings) -> ep`, tasks/stage.py). Arrays keep their shapes in the field names' docs; units are SI
(meters, seconds) and pixels follow docs/architecture.md#conventions: origin at the centre of the top-left
pixel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PIPELINE_VERSION = "0.1.0"


@dataclass(frozen=True)
class LeRobotPart:
    """Where one LeRobot v3 episode lives, resolved once by discovery so workers never re-read the metadata.

    `video` is the camera's mp4 shared with other episodes; the episode is its [from_s, to_s) slice.
    `data` is the parquet holding the episode's rows (with other episodes'); `index` its `episode_index`.
    """

    root: str
    index: int
    camera: str
    video: str
    from_s: float
    to_s: float
    data: str
    length: int  # frames (= data rows) of the episode
    fps: float
    depth: LeRobotDepth | None = None  # the depth feature read as given depth, if the dataset has one


@dataclass(frozen=True)
class LeRobotDepth:
    """Where an episode's depth lives: the `key` column of its data file ((H, W) arrays), or (`video` set) the
    [from_s, to_s) slice of a depth-map video; `scale` meters per stored unit."""

    key: str
    scale: float
    video: str | None = None
    from_s: float = 0.0
    to_s: float = 0.0
    hw: tuple[int, int] = (0, 0)  # (H, W) of a column's per-frame array


@dataclass(frozen=True)
class EpisodeSource:
    """One discovered input: a video file, an episode directory or one episode of a LeRobot dataset (input
    formats 1-3, docs/architecture.md#input-formats)."""

    uri: str  # a LeRobot episode: "<root>#episode=<index>&camera=<key>"
    episode_id: str  # sha256 of the source bytes (LeRobot: its metadata) + extraction config
    corpus: str = ""
    preset: str = "generic"
    kind: str = "dir"  # "video" | "dir" | "lerobot"
    lerobot: LeRobotPart | None = None  # kind "lerobot" only


@dataclass(frozen=True)
class EpisodeDemo:
    """The robot demonstration beside an episode's video: one step per *source* frame (not subsampled).

    Step i goes with source frame i (`Episode.frame_index` says which of them were stored). Either array
    may have zero columns when the source gives only the other (sim `actions.npy` without `states.npy`).
    """

    states: np.ndarray  # (S, Ds) float32
    actions: np.ndarray  # (S, Da) float32
    timestamps_s: np.ndarray  # (S,) float64, seconds from the first step; NaN when the rate is unknown
    fps: float  # steps per second; 0 when unknown
    source_index: int | None = None  # LeRobot episode_index; None for an episode directory

    @property
    def n_steps(self) -> int:
        return int(len(self.states))


@dataclass(frozen=True)
class Samples:
    """Per-frame training samples (docs/method.md#stages-4-to-6-samples), concatenated over frames.

    `offsets` (F+1,) index the keypoint axis: keypoints of frame `frames[i]` are rows
    offsets[i]:offsets[i+1]. `future` (M, L, 3) runs forward from t (index 0 = t) and `history`
    (M, Lh, 3) runs backward from t (index 0 = t, time reversed); both hold (u px, v px, z m)
    through camera t, arc-length retargeted. `track_index` (M,) points into the episode's tracks.
    """

    frames: np.ndarray  # (F,) int32, stored-frame index t
    offsets: np.ndarray  # (F+1,) int64
    track_index: np.ndarray  # (M,) int32
    keypoints_uv: np.ndarray  # (M, 2) float32, pixels at t
    future: np.ndarray  # (M, L, 3) float32
    future_valid: np.ndarray  # (M, L) bool
    history: np.ndarray  # (M, Lh, 3) float32
    history_valid: np.ndarray  # (M, Lh) bool
    cluster_id: np.ndarray  # (M,) int32

    @property
    def n_frames(self) -> int:
        return int(len(self.frames))


@dataclass(frozen=True)
class Episode:
    """Everything known about one episode; stages fill it in order."""

    source: EpisodeSource
    # decode
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8 RGB
    frame_index: np.ndarray | None = None  # (T,) int32 source frame number of each stored frame
    fps: float = 0.0  # of the stored (subsampled) frames
    depth: np.ndarray | None = None  # (T, H, W) float32 meters, NaN/0 = unknown
    clean_depth: np.ndarray | None = None  # depth after the edge filter; made once, shared by track and lift
    K: np.ndarray | None = None  # (3, 3) float64 pixels of the stored resolution
    w2c: np.ndarray | None = None  # (T, 4, 4) float64 world -> camera (OpenCV)
    depth_source: str = ""
    pose_source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    demo: EpisodeDemo | None = None  # states and actions (sim actions.npy/states.npy, LeRobot columns)
    spill_dir: str = ""  # where the per-pixel arrays live when they are on disk (tasks/extract/spill.py); "" in memory
    # keypoints
    gray: np.ndarray | None = None  # (T, H, W) uint8, made by keypoints for the tracker (dropped after it)
    seed_uv: np.ndarray | None = None  # (S, 2) float32 first-frame query proposals (stage 2), consumed by track
    seed_flat: np.ndarray | None = None  # (S,) bool: on flat texture (followed as static points only)
    seed_frame: np.ndarray | None = None  # (S,) int32 query frame of each seed (dino backend); None: all at frame 0
    seed_entity: np.ndarray | None = None  # (S,) int32 DINO entity of each seed (dino backend), becomes cluster_id
    query_frame: np.ndarray | None = None  # (N,) int32
    query_uv: np.ndarray | None = None  # (N, 2) float32 pixels
    cluster_id: np.ndarray | None = None  # (N,) int32
    # track (2D)
    tracks_uv: np.ndarray | None = None  # (N, T, 2) float32 pixels
    visible: np.ndarray | None = None  # (N, T) bool
    # lift (world)
    tracks_xyz: np.ndarray | None = None  # (N, T, 3) float32 world meters, NaN where unknown
    # filter
    is_moving: np.ndarray | None = None  # (N,) bool
    track_coverage: float = float("nan")
    # samples
    samples: Samples | None = None
    # pose estimation: scale honesty (docs/method.md#stage-1-depth-and-camera-poses; NaN when poses and
    # depth were given)
    scale_spread: float = float("nan")  # spread of per-chunk scale factors (Sim(3) stitching)
    depth_scale_ratio: float = float("nan")  # median predicted/given depth where any depth was given
    metric_scale_ok: bool = True  # False: the scale is inconsistent and the xyz are not trustworthy meters
    # captions (tasks/captions/caption.py)
    captions: Any = None  # tasks.captions.caption.Captions
    # bookkeeping
    status: str = "ok"  # "ok" | "failed" | "rejected"
    errors: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    def replace(self, **changes: Any) -> "Episode":
        return dataclasses.replace(self, **changes)

    @property
    def n_frames(self) -> int:
        return 0 if self.frames is None else int(self.frames.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the stored frames."""
        if self.frames is None:
            return (0, 0)
        return (int(self.frames.shape[2]), int(self.frames.shape[1]))

    @property
    def n_tracks(self) -> int:
        return 0 if self.query_uv is None else int(self.query_uv.shape[0])

    @property
    def n_samples(self) -> int:
        """(frame, keypoint) samples stored: only "ok" episodes write samples."""
        return int(len(self.samples.track_index)) if self.status == "ok" and self.samples is not None else 0
