"""Stage 0: read an episode's files (video, depth, cameras, meta, demonstration) and subsample to the preset's rate.

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
A demonstration (states/actions) is kept whole, one step per source frame, whatever the subsampling.
One episode of a LeRobot dataset is read by tasks/extract/lerobot_episode.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


from tasks.config import DecodeConfig, IngestConfig, LeRobotConfig
from tasks.extract.episode_files import (
    check_demo_headers, check_depth_header, load_meta, meta_fps, read_cameras, read_demo, read_depth,
)
from tasks.extract.intrinsics import intrinsics_from_metadata, resize_intrinsics, video_metadata
from tasks.extract.lerobot_episode import precheck_lerobot, read_lerobot
from tasks.extract.spill import removed_on_error
from tasks.extract.video import (
    FrameCount, Video, check_enough_frames, frame_files, probe_video, read_frame_dir, read_image, read_video,
    short_frames_tolerated,
)
from tasks.stage import Stage
from tasks.types import Episode, EpisodeSource

NOTE_KEY = "decode_note"  # errors[NOTE_KEY]: what decode tolerated in an episode that stays "ok"


@dataclass(frozen=True)
class DecodeSettings:
    """What stage 0 reads from the ingest config: its own section, the shortest episode worth decoding, and
    which columns of a LeRobot episode are its demonstration."""

    decode: DecodeConfig
    min_frames: int = 1  # TrackConfig.min_visible_frames: fewer stored frames cannot hold a single trace
    lerobot: LeRobotConfig = LeRobotConfig()


def precheck_source(src: EpisodeSource, cfg: DecodeConfig, min_frames: int = 1) -> None:
    """Every refusal that needs no decoding: headers of the video, depth.npy and the demonstration, cameras.npz, meta.json."""
    if src.kind == "lerobot":
        return precheck_lerobot(src, cfg, min_frames)
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
        files = frame_files(path / "frames")
        check_enough_frames(path / "frames", len(files), meta_fps(meta, path / "meta.json"), cfg, min_frames)
        src_hw = read_image(files[0]).shape[:2]
        count = FrameCount(len(files), frozenset({len(files)}))
    if (path / "depth.npy").exists():
        check_depth_header(path / "depth.npy", count, src_hw)
    if (path / "cameras.npz").exists():
        read_cameras(path / "cameras.npz", count)
    check_demo_headers(path, count)


def decode(
    src: EpisodeSource, cfg: DecodeConfig, min_frames: int = 1, lerobot: LeRobotConfig = LeRobotConfig()
) -> Episode:
    """Read one episode (input format 1, 2 or 3) into an Episode with frames and whatever depth, cameras and
    demonstration it has.

    Depth is read leniently (any share of unknown pixels): whether given depth is required, and how
    complete it must be, is the depth stage's rule; likewise given cameras for the pose stage.
    """
    if src.kind == "lerobot":
        video, meta, K, demo, depth = read_lerobot(src, cfg, lerobot, min_frames)
        return _episode(src, video, meta, K=K, depth=depth).replace(demo=demo)
    path = Path(src.uri)
    if src.kind == "video":
        video = read_video(path, cfg, min_frames)
        size = (video.frames.shape[2], video.frames.shape[1])
        # Depth and poses are estimated later; intrinsics come from the container's tags if it has any.
        found = intrinsics_from_metadata({}, video_metadata(path), *video.src_size, where=str(path))
        K, meta = (resize_intrinsics(found[0], video.src_size, size), {"intrinsics": found[1]}) if found else (None, {})
        return _episode(src, video, meta, K=K)

    meta = load_meta(path / "meta.json")
    fps_in_meta = meta_fps(meta, path / "meta.json")
    if (path / "video.mp4").exists() or (path / "video.mp4").is_symlink():
        video = read_video(path / "video.mp4", cfg, min_frames)
    else:
        video = read_frame_dir(path / "frames", cfg, fps_in_meta, min_frames)
    if not video.fps and fps_in_meta:
        index = video.index
        video = replace(video, fps=fps_in_meta / (index[1] - index[0] if len(index) > 1 else 1))
    src_hw = (video.src_size[1], video.src_size[0])
    size = (video.frames.shape[2], video.frames.shape[1])

    depth = None
    if (path / "depth.npy").exists():
        depth, corrupt = read_depth(path / "depth.npy", video.count, video.index, src_hw, size, video.spill_dir)
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
    demo = read_demo(path, video.count, fps_in_meta or video.src_fps)
    return _episode(src, video, meta, K=K, depth=depth, w2c=w2c).replace(demo=demo)


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
        spill_dir=video.spill_dir,
    )


class Decode(Stage[DecodeSettings]):
    """Stage 0 (docs/method.md#stage-0-decode-and-subsample): frames, given depth and cameras, metadata."""

    name = "decode"

    def settings(self, cfg: IngestConfig) -> DecodeSettings:
        return DecodeSettings(cfg.decode, cfg.track.min_visible_frames, cfg.lerobot)

    def precheck(self, src: EpisodeSource, settings: DecodeSettings) -> None:
        precheck_source(src, settings.decode, settings.min_frames)

    def run(self, ep: Episode, settings: DecodeSettings) -> Episode:
        with removed_on_error(settings.decode.spill_dir):
            return decode(ep.source, settings.decode, settings.min_frames, settings.lerobot)
