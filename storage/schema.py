"""Arrow schemas of the Lance trace dataset (the contract in docs/architecture.md#lance-tables).

Units and conventions: world frame in meters; cameras OpenCV; `K` row-major 3x3 in pixels of the
stored resolution; `w2c` row-major 4x4 per stored frame; pixels have their origin at the centre of
the top-left pixel. In `samples`, `future[i]` runs forward from frame t (index 0 = t, the anchor)
and `history[i]` runs backward from t (index 0 = t, then t-1, ...), both as (u px, v px, z m)
through camera t after arc-length retargeting; invalid entries are NaN with `*_valid` False.
`errors` is a JSON object {stage: message}: a JSON string keeps the column readable from SQL and
every Lance/Arrow tool, where map columns are poorly supported.
"""

from __future__ import annotations

import lance
import pyarrow as pa

FUTURE_LEN = 128
HISTORY_LEN = 32
EMBEDDING_DIM = 384

_f32 = pa.float32()
_xyz = pa.list_(_f32, 3)
_uv = pa.list_(_f32, 2)

EPISODES = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string()),
        pa.field("corpus", pa.string()),
        pa.field("preset", pa.string()),
        pa.field("fps", _f32),
        pa.field("n_frames", pa.int32()),
        pa.field("frame_index", pa.list_(pa.int32())),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("K", pa.list_(_f32, 9)),
        pa.field("w2c", pa.list_(pa.list_(_f32, 16))),
        pa.field("depth_source", pa.string()),
        pa.field("pose_source", pa.string()),
        pa.field("scale_spread", _f32),
        pa.field("depth_scale_ratio", _f32),
        pa.field("metric_scale_ok", pa.bool_()),
        pa.field("status", pa.string()),
        pa.field("errors", pa.string()),
        pa.field("track_coverage", _f32),
        pa.field("n_tracks", pa.int32()),
        pa.field("n_moving", pa.int32()),
        pa.field("n_samples", pa.int32()),  # (frame, keypoint) traces stored in `samples`
        pa.field("instruction", pa.string()),
        pa.field("task", pa.string()),
        pa.field("embodiment", pa.string()),
        pa.field("pipeline_version", pa.string()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        pa.field("config", pa.string()),
    ]
)

TRACKS = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int32()),
        pa.field("query_frame", pa.int32()),
        pa.field("query_uv", _uv),
        pa.field("xyz", pa.list_(_xyz)),
        pa.field("visible", pa.list_(pa.bool_())),
        pa.field("cluster_id", pa.int32()),
        pa.field("is_moving", pa.bool_()),
    ]
)


def samples_schema(future_len: int = FUTURE_LEN, history_len: int = HISTORY_LEN) -> pa.Schema:
    """One row per (episode, frame); per-keypoint lists. L and Lh are fixed per dataset (metadata)."""
    return pa.schema(
        [
            pa.field("episode_id", pa.string(), nullable=False),
            pa.field("frame", pa.int32()),
            pa.field("keypoints_uv", pa.list_(_uv)),
            pa.field("track_id", pa.list_(pa.int32())),
            pa.field("future", pa.list_(pa.list_(_xyz, future_len))),
            pa.field("future_valid", pa.list_(pa.list_(pa.bool_(), future_len))),
            pa.field("history", pa.list_(pa.list_(_xyz, history_len))),
            pa.field("history_valid", pa.list_(pa.list_(pa.bool_(), history_len))),
            pa.field("cluster_id", pa.list_(pa.int32())),
            pa.field("caption_ids", pa.list_(pa.int32())),
        ],
        metadata={"future_len": str(future_len), "history_len": str(history_len)},
    )


SAMPLES = samples_schema()

FRAMES = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("frame", pa.int32()),
        lance.blob_field("jpeg"),
        lance.blob_field("depth_png16"),  # 16-bit PNG of rounded mm (0 = unknown, caps at 65.535 m); null without depth
    ]
)

CAPTIONS = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("caption_id", pa.int32()),
        pa.field("level", pa.string()),  # "motion" | "subtask" | "task"
        pa.field("start_frame", pa.int32()),
        pa.field("end_frame", pa.int32()),
        pa.field("instruction_1", pa.string()),
        pa.field("instruction_2", pa.string()),
        pa.field("instruction_3", pa.string()),
        pa.field("skill_labels", pa.list_(pa.string())),
        pa.field("embodiment", pa.string()),
        pa.field("embedding", pa.list_(_f32, EMBEDDING_DIM)),
    ]
)

# A robot demonstration (states and actions) beside an episode's video: one row per step = source frame,
# whatever the subsampling. `frame` is the stored-frame index t showing the step (null when decode skipped
# that frame); `frame_index` the step's source frame number (episodes.frame_index[t] == frame_index).
DEMONSTRATIONS = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32()),  # step = source frame number, 0 ... S-1
        pa.field("frame", pa.int32()),  # stored-frame index t, null when that frame was not stored
        pa.field("timestamp", _f32),  # s from the episode's first step
        pa.field("state", pa.list_(_f32)),  # the same length in every row of an episode (may be 0)
        pa.field("action", pa.list_(_f32)),
        pa.field("fps", _f32),  # steps per second (the source rate); 0 if unknown
        pa.field("source_episode_index", pa.int64()),  # LeRobot episode_index; null for an episode directory
    ]
)

# The one table registry: every writer, reader and check goes through these two names.
TABLES = ("episodes", "tracks", "samples", "frames", "captions", "demonstrations")


def table_schemas(future_len: int = FUTURE_LEN, history_len: int = HISTORY_LEN) -> dict[str, pa.Schema]:
    """Schema of every table in TABLES; only `samples` depends on settings (its trace lengths)."""
    return {
        "episodes": EPISODES,
        "tracks": TRACKS,
        "samples": samples_schema(future_len, history_len),
        "frames": FRAMES,
        "captions": CAPTIONS,
        "demonstrations": DEMONSTRATIONS,
    }
