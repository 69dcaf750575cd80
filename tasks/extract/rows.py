"""Convert one processed Episode into rows of the episodes / tracks / samples / frames / captions /
demonstrations tables.

Which tables an episode reaches depends on its status: every episode gets its `episodes` row
(errors are data); "rejected" episodes (ran through, failed a quality check) keep their tracks and
frames so the rejection can be inspected, but give no training samples; "failed" episodes give
the `episodes` row only. A demonstration (states and actions) goes with its episode's frames: "ok" and
"rejected" episodes keep it, whole, one row per source frame. Numbers are stored as float32; `frame` everywhere is the stored-frame
index t (0..n_frames-1), `frame_index` maps it back to source frame numbers.
"""

from __future__ import annotations

import datetime as dt
import json

import lance
import numpy as np
import pyarrow as pa

from storage import schema as S
from storage.frame_codec import encode_depth_png16, encode_jpeg
from tasks.config import IngestConfig
from tasks.extract.spill import release
from tasks.types import PIPELINE_VERSION, Episode


def _fixed(values: np.ndarray, width: int, dtype=pa.float32()) -> pa.Array:
    """(n, width) array -> fixed_size_list<dtype, width>."""
    flat = pa.array(np.ascontiguousarray(values, dtype=dtype.to_pandas_dtype()).reshape(-1), type=dtype)
    return pa.FixedSizeListArray.from_arrays(flat, width)


def _ragged(child: pa.Array, offsets: np.ndarray) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), child)


def _lists(values: np.ndarray) -> pa.Array:
    """(n, D) array -> list<float32> with D entries per row (D may be 0)."""
    n, width = values.shape
    return _ragged(pa.array(np.ascontiguousarray(values, np.float32).reshape(-1), pa.float32()), np.arange(n + 1) * width)


def _or(values: np.ndarray | None, n: int, fill) -> np.ndarray:
    """`values`, or `n` copies of `fill` for a stage that did not run (-1 cluster = unclustered)."""
    return np.full(n, fill) if values is None else np.asarray(values)


def episode_row(ep: Episode, cfg: IngestConfig) -> pa.Table:
    T = ep.n_frames
    W, H = ep.image_size
    K = ep.K if ep.K is not None else np.full((3, 3), np.nan)
    w2c = ep.w2c if ep.w2c is not None else np.zeros((0, 4, 4))
    row = {
        "episode_id": [ep.source.episode_id],
        "source_uri": [ep.source.uri],
        "corpus": [ep.source.corpus or cfg.corpus],
        "preset": [cfg.preset],
        "fps": [float(ep.fps)],
        "n_frames": [T],
        "frame_index": [[] if ep.frame_index is None else ep.frame_index.tolist()],
        "width": [W],
        "height": [H],
        "K": [K.reshape(9).astype(np.float32).tolist()],
        "w2c": [w2c.reshape(-1, 16).astype(np.float32).tolist()],
        "depth_source": [ep.depth_source],
        "pose_source": [ep.pose_source],
        "scale_spread": [float(ep.scale_spread)],
        "depth_scale_ratio": [float(ep.depth_scale_ratio)],
        "metric_scale_ok": [bool(ep.metric_scale_ok)],
        "status": [ep.status],
        "errors": [json.dumps(ep.errors, sort_keys=True)],
        "track_coverage": [float(ep.track_coverage)],
        "n_tracks": [ep.n_tracks],
        "n_moving": [0 if ep.is_moving is None else int(ep.is_moving.sum())],
        "n_samples": [ep.n_samples],
        "instruction": [str(ep.meta.get("instruction", ""))],
        "task": [str(ep.meta.get("task", ""))],
        "embodiment": [str(ep.meta.get("embodiment", ""))],
        "pipeline_version": [PIPELINE_VERSION],
        "ingested_at": [dt.datetime.now(dt.timezone.utc)],
        "config": [cfg.model_dump_json()],
    }
    return pa.table(row, schema=S.EPISODES)


def track_rows(ep: Episode) -> pa.Table:
    if ep.status == "failed" or ep.tracks_xyz is None:
        return S.TRACKS.empty_table()
    N, T = ep.tracks_xyz.shape[:2]
    visible = np.isfinite(ep.tracks_xyz).all(-1) if ep.visible is None else ep.visible
    per_track = np.arange(N + 1) * T
    return pa.table(
        {
            "episode_id": pa.array([ep.source.episode_id] * N),
            "track_id": pa.array(np.arange(N, dtype=np.int32)),
            "query_frame": pa.array(_or(ep.query_frame, N, 0), pa.int32()),
            "query_uv": _fixed(ep.query_uv, 2),
            "xyz": _ragged(_fixed(ep.tracks_xyz.reshape(-1, 3), 3), per_track),
            "visible": _ragged(pa.array(visible.reshape(-1), pa.bool_()), per_track),
            "cluster_id": pa.array(_or(ep.cluster_id, N, -1), pa.int32()),
            "is_moving": pa.array(_or(ep.is_moving, N, False), pa.bool_()),
        },
        schema=S.TRACKS,
    )


def sample_rows(ep: Episode, cfg: IngestConfig, lo: int = 0, hi: int | None = None) -> pa.Table:
    """Rows of the sampled frames [lo, hi) (all by default; index into `ep.samples.frames`): a long episode is
    written a block at a time, so its samples are not held again as Arrow rows all at once."""
    schema = S.samples_schema(cfg.retarget.future_len, cfg.retarget.history_len)
    s = ep.samples
    if ep.status != "ok" or s is None or s.n_frames == 0:
        return schema.empty_table()
    hi = s.n_frames if hi is None else hi
    L, Lh = s.future.shape[1], s.history.shape[1]
    a, b = int(s.offsets[lo]), int(s.offsets[hi])
    off = s.offsets[lo : hi + 1].astype(np.int64) - a
    frames, F = s.frames[lo:hi], hi - lo
    return pa.table(
        {
            "episode_id": pa.array([ep.source.episode_id] * F),
            "frame": pa.array(frames.astype(np.int32)),
            "keypoints_uv": _ragged(_fixed(s.keypoints_uv[a:b], 2), off),
            "track_id": _ragged(pa.array(s.track_index[a:b].astype(np.int32)), off),
            "future": _ragged(pa.FixedSizeListArray.from_arrays(_fixed(s.future[a:b].reshape(-1, 3), 3), L), off),
            "future_valid": _ragged(_fixed(s.future_valid[a:b], L, pa.bool_()), off),
            "history": _ragged(pa.FixedSizeListArray.from_arrays(_fixed(s.history[a:b].reshape(-1, 3), 3), Lh), off),
            "history_valid": _ragged(_fixed(s.history_valid[a:b], Lh, pa.bool_()), off),
            "cluster_id": _ragged(pa.array(s.cluster_id[a:b].astype(np.int32)), off),
            "caption_ids": pa.array(
                [[] for _ in range(F)] if ep.captions is None else ep.captions.ids_covering(frames), pa.list_(pa.int32())
            ),
        },
        schema=schema,
    )


def frame_rows(ep: Episode, cfg: IngestConfig, lo: int = 0, hi: int | None = None) -> pa.Table:
    """Rows of stored frames [lo, hi) (all by default): a long episode is written a block at a time."""
    if ep.frames is None or ep.status == "failed":
        return S.FRAMES.empty_table()
    hi = ep.n_frames if hi is None else hi
    jpegs = [encode_jpeg(ep.frames[t], cfg.jpeg_quality) for t in range(lo, hi)]
    depths = [None] * len(jpegs) if ep.depth is None else [encode_depth_png16(ep.depth[t]) for t in range(lo, hi)]
    release(ep.frames, ep.depth)
    return pa.table(
        {
            "episode_id": pa.array([ep.source.episode_id] * len(jpegs)),
            "frame": pa.array(np.arange(lo, hi, dtype=np.int32)),
            "jpeg": lance.blob_array(jpegs),
            "depth_png16": lance.blob_array(depths),
        },
        schema=S.FRAMES,
    )


def caption_rows(ep: Episode) -> pa.Table:
    """Captions of an "ok" episode (tasks/captions/caption.py builds them)."""
    if ep.status != "ok" or ep.captions is None:
        return S.CAPTIONS.empty_table()
    return ep.captions.to_table(ep.source.episode_id)


def demonstration_rows(ep: Episode) -> pa.Table:
    """One row per step of the episode's demonstration; `frame` is null where decode skipped the step's frame."""
    d = ep.demo
    if ep.status == "failed" or d is None or d.n_steps == 0:
        return S.DEMONSTRATIONS.empty_table()
    n = d.n_steps
    stored = np.full(n, -1, np.int32)
    if ep.frame_index is not None:
        index = np.asarray(ep.frame_index)
        inside = index < n
        stored[index[inside]] = np.flatnonzero(inside)
    return pa.table(
        {
            "episode_id": pa.array([ep.source.episode_id] * n),
            "frame_index": pa.array(np.arange(n, dtype=np.int32)),
            "frame": pa.array(stored, pa.int32(), mask=stored < 0),
            "timestamp": pa.array(d.timestamps_s.astype(np.float32)),
            "state": _lists(d.states),
            "action": _lists(d.actions),
            "fps": pa.array(np.full(n, d.fps, np.float32)),
            "source_episode_index": pa.array([d.source_index] * n, pa.int64()),
        },
        schema=S.DEMONSTRATIONS,
    )


def episode_tables(ep: Episode, cfg: IngestConfig, skip: tuple[str, ...] = ()) -> dict[str, pa.Table]:
    """Rows for every table but `skip`; a failed episode gives its `episodes` row only (nothing is lost)."""
    builders = {
        "episodes": lambda: episode_row(ep, cfg),
        "tracks": lambda: track_rows(ep),
        "samples": lambda: sample_rows(ep, cfg),
        "frames": lambda: frame_rows(ep, cfg),
        "captions": lambda: caption_rows(ep),
        "demonstrations": lambda: demonstration_rows(ep),
    }
    return {name: build() for name, build in builders.items() if name not in skip}
