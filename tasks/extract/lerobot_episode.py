"""Stage 0 for one episode of a LeRobot v3 dataset (input format 3): its camera's slice of the shared mp4, its
rows of the data parquet (the demonstration), its task string and, when the dataset has a depth feature, its depth.

Discovery resolved where everything lives (`EpisodeSource.lerobot`, tasks/run/lerobot_sources.py), so a worker
reads this episode's bytes only: it seeks into the mp4 (any codec FFmpeg decodes, LeRobot's AV1 through
libdav1d) and reads the parquet filtered on `episode_index`. Frame n of the slice goes with the row whose
`frame_index` is n, so the video, the rows and meta/episodes must agree on the length. A LeRobot dataset brings
no camera poses (estimated) and usually no depth: then the plain-video rules apply (depth predicted, intrinsics
from the container's tags or the field-of-view prior). A depth feature (a depth-map video, or a per-frame array in
the data rows) registered to the camera is read as given depth, scaled by `depth_scale` to meters, at the
camera's kept frames and working size. Every refusal names the file and the cause.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.config import DecodeConfig, LeRobotConfig
from tasks.errors import EpisodeInputError
from tasks.extract.episode_files import depth_in_meters
from tasks.extract.intrinsics import intrinsics_from_metadata, resize_intrinsics, video_metadata
from tasks.extract.video import Video, check_enough_frames, check_window, probe_video, read_video
from tasks.types import EpisodeDemo, EpisodeSource, LeRobotPart

TASKS_FILE = Path("meta") / "tasks.parquet"
INDEX_COLUMNS = ("episode_index", "frame_index", "timestamp", "task_index")  # every v3 data file has them


def precheck_lerobot(src: EpisodeSource, cfg: DecodeConfig, min_frames: int = 1) -> None:
    """Refusals before decoding: the mp4 is there and a video, the episode's time range lies inside it, the
    episode is long enough, its data file exists."""
    part = _part(src)
    video = Path(part.video)
    check_window(video, probe_video(video), (part.from_s, part.to_s))
    check_enough_frames(video, part.length, part.fps, cfg, min_frames)
    if not Path(part.data).is_file():
        raise EpisodeInputError(f"{part.data}: file not found (the data rows of episode {part.index})")


def read_lerobot(
    src: EpisodeSource, cfg: DecodeConfig, keys: LeRobotConfig, min_frames: int = 1
) -> tuple[Video, dict, np.ndarray | None, EpisodeDemo | None, np.ndarray | None]:
    """(frames of the episode's time range, meta with its task, K when the mp4 tags give one, demonstration,
    depth when the dataset has a depth feature)."""
    part = _part(src)
    path = Path(part.video)
    video = read_video(path, cfg, min_frames, window=(part.from_s, part.to_s))
    if video.count.n != part.length:
        raise EpisodeInputError(
            f"{path}: [{part.from_s:g}, {part.to_s:g}) s holds {video.count.n} frames, but episode {part.index} has "
            f"{part.length} (meta/episodes)"
        )
    rows = read_rows(part, keys)
    task = task_string(Path(part.root), rows)
    meta = {"instruction": task, "task": task, "lerobot": {"episode_index": part.index, "camera": part.camera}}
    K = None
    found = intrinsics_from_metadata({}, video_metadata(path), *video.src_size, where=str(path))
    if found:
        K = resize_intrinsics(found[0], video.src_size, (video.frames.shape[2], video.frames.shape[1]))
        meta["intrinsics"] = found[1]
    depth = None
    if part.depth is not None:
        depth, corrupt = read_lerobot_depth(part, video, cfg, min_frames)
        meta |= {"depth_corrupt_px": corrupt, "depth_feature": part.depth.key}
    return video, meta, K, demonstration(rows, part, keys), depth


def read_lerobot_depth(part: LeRobotPart, video: Video, cfg: DecodeConfig, min_frames: int) -> tuple[np.ndarray, dict]:
    """The episode's depth at the camera's kept frames and working size (meters, NaN unknown), from a depth-map
    video's first channel or the data rows' (H, W) arrays, times the depth scale."""
    given = part.depth
    size = (video.frames.shape[2], video.frames.shape[1])
    if given.video is not None:
        maps = read_video(Path(given.video), cfg, min_frames, window=(given.from_s, given.to_s))
        if maps.count.n != part.length or not np.array_equal(maps.index, video.index):
            raise EpisodeInputError(
                f"{given.video}: [{given.from_s:g}, {given.to_s:g}) s holds {maps.count.n} depth frames, but episode "
                f"{part.index} has {part.length}"
            )
        return depth_in_meters([maps.frames[..., 0]], len(maps.index), maps.frames.shape[1:3], size, given.scale)
    table = pq.read_table(part.data, columns=[given.key, "frame_index"], filters=[("episode_index", "=", part.index)])
    table = table.sort_by("frame_index").take(pa.array(np.asarray(video.index, np.int64)))
    flat = feature_array(table, given.key, part.data)
    if flat.shape[1] != given.hw[0] * given.hw[1]:
        raise EpisodeInputError(f"{part.data}: column {given.key} rows hold {flat.shape[1]} values, info.json says {given.hw}")
    return depth_in_meters([flat.reshape(len(flat), *given.hw)], len(flat), given.hw, size, given.scale)


def _part(src: EpisodeSource) -> LeRobotPart:
    if src.lerobot is None:
        raise EpisodeInputError(f"{src.uri}: a LeRobot source without its episode's location (discover makes it)")
    return src.lerobot


def read_rows(part: LeRobotPart, keys: LeRobotConfig) -> pa.Table:
    """The episode's rows of its data file (index columns and the demonstration's features), by frame_index."""
    path = Path(part.data)
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise EpisodeInputError(f"{path}: not a readable parquet file ({exc})") from exc
    want = [*INDEX_COLUMNS, *(k for k in (keys.state_key, keys.action_key) if k)]
    missing = [c for c in want if c not in names]
    if missing:
        raise EpisodeInputError(f"{path}: no column {', '.join(missing)}; it has {', '.join(names)}")
    rows = pq.read_table(path, columns=want, filters=[("episode_index", "=", part.index)]).sort_by("frame_index")
    if rows.num_rows != part.length:
        raise EpisodeInputError(f"{path}: {rows.num_rows} rows of episode {part.index}, meta/episodes says {part.length}")
    if not np.array_equal(rows["frame_index"].to_numpy(), np.arange(part.length)):
        raise EpisodeInputError(f"{path}: episode {part.index}'s frame_index is not 0..{part.length - 1} once each")
    return rows


def feature_array(rows: pa.Table, key: str, where: str) -> np.ndarray:
    """A feature column as float32 (S, D): each row's list (nested lists too) flattened, a scalar as D = 1."""
    col = rows.column(key).combine_chunks()
    values = col
    while pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type):
        if not pa.types.is_fixed_size_list(values.type) and len(set(pc.list_value_length(values).to_pylist())) > 1:
            raise EpisodeInputError(f"{where}: column {key} has rows of different lengths")
        values = values.flatten()
    numeric = pa.types.is_floating(values.type) or pa.types.is_integer(values.type) or pa.types.is_boolean(values.type)
    if not numeric or col.null_count or values.null_count:
        why = f"holds {col.type}" if not numeric else "has missing values"
        raise EpisodeInputError(f"{where}: column {key} {why}; expected numbers in every row")
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(col), flat.size // max(1, len(col)))


def demonstration(rows: pa.Table, part: LeRobotPart, keys: LeRobotConfig) -> EpisodeDemo | None:
    """The configured state and action columns (a key set to None gives (S, 0)); None when both are None."""
    if keys.state_key is None and keys.action_key is None:
        return None
    n = rows.num_rows
    states, actions = (
        feature_array(rows, key, part.data) if key else np.zeros((n, 0), np.float32)
        for key in (keys.state_key, keys.action_key)
    )
    times = rows["timestamp"].to_numpy().astype(np.float64)
    return EpisodeDemo(states=states, actions=actions, timestamps_s=times, fps=part.fps, source_index=part.index)


def read_tasks(root: Path) -> dict[int, str]:
    """task_index -> task string from meta/tasks.parquet.

    LeRobot writes the strings as the pandas index (`__index_level_0__`, named in the pandas schema
    metadata), not as a `task` column; both layouts are read.
    """
    path = root / TASKS_FILE
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise EpisodeInputError(f"{path}: cannot read the task strings ({exc})") from exc
    index_columns = (table.schema.pandas_metadata or {}).get("index_columns", [])
    text = next((c for c in ["task", *index_columns] if isinstance(c, str) and c in table.column_names), None)
    if text is None or "task_index" not in table.column_names:
        raise EpisodeInputError(f"{path}: expected task_index and the task strings; it has {', '.join(table.column_names)}")
    return dict(zip(table["task_index"].to_pylist(), table[text].to_pylist()))


def task_string(root: Path, rows: pa.Table) -> str:
    """The episode's task (several, in order of first use, joined by "; ")."""
    tasks = read_tasks(root)
    used = list(dict.fromkeys(rows["task_index"].to_pylist()))
    unknown = [i for i in used if i not in tasks]
    if unknown:
        raise EpisodeInputError(f"{root / TASKS_FILE}: no task_index {unknown[0]} (the data rows use it)")
    return "; ".join(tasks[i] for i in used)
