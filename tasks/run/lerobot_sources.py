"""A LeRobot v3 dataset (input format 3) as episode sources: one per selected episode, each with a stable id.

Read from the files with pyarrow, without the `lerobot` package: `meta/info.json` (version, fps, features,
the `data_path` / `video_path` templates; keys it does not know are ignored) and every
`meta/episodes/**/*.parquet` (per episode: its length, which data and video files hold it, the video's
[from, to) seconds, content statistics). Everything a worker needs goes into `LeRobotPart`, so workers never
read the metadata again. Whatever the dataset cannot give is refused here, before any work, naming the key
or the file and the valid choices.

The id is sha256 over what identifies the episode's content (info.json's version, robot type, fps and the
specs of the features read; the episode's row of meta/episodes with the statistics of those features), the
LeRobot settings that change its data (camera, state, action and depth keys, depth scale) and the extraction key. Neither where
the dataset lies nor which other episodes are selected enters it, so a resumed run finds the same ids, and
episodes recorded later leave the earlier ones' ids alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import IngestConfig
from tasks.types import EpisodeSource, LeRobotDepth, LeRobotPart

INFO_FILE = Path("meta") / "info.json"
EPISODES_DIR = Path("meta") / "episodes"
SUPPORTED_VERSIONS = "v3.0 (any v3.x)"
_INFO_IDENTITY = ("codebase_version", "robot_type", "fps")


class LeRobotSourceError(ValueError):
    """The dataset cannot be read with these settings; the message names the file or key and the choices."""


def is_lerobot_root(path: Path) -> bool:
    return path.is_dir() and (path / INFO_FILE).is_file()


def read_info(root: Path) -> dict:
    """meta/info.json, refused unless it is a v3 dataset with fps, features and path templates."""
    path = root / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeRobotSourceError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(info, dict):
        raise LeRobotSourceError(f"{path}: expected a JSON object")
    version = str(info.get("codebase_version", ""))
    if not re.fullmatch(r"v3(\.\d+)*", version):
        raise LeRobotSourceError(
            f"{path}: LeRobot codebase_version {version or '(none)'!r} is not supported; supported: {SUPPORTED_VERSIONS}. "
            "Convert older datasets with lerobot's v2.1 -> v3.0 conversion script"
        )
    missing = [k for k in ("fps", "features", "data_path", "video_path") if not info.get(k)]
    if missing:
        raise LeRobotSourceError(f"{path}: no {', '.join(missing)}")
    if not isinstance(info["features"], dict) or not isinstance(info["fps"], (int, float)) or info["fps"] <= 0:
        raise LeRobotSourceError(f"{path}: features must be an object and fps a positive number")
    return info


def video_keys(info: dict) -> list[str]:
    return [k for k, f in info["features"].items() if isinstance(f, dict) and f.get("dtype") == "video"]


def pick_camera(root: Path, info: dict, camera: str | None) -> str:
    """The configured camera, or the first video feature; an unknown key lists the valid ones."""
    keys = video_keys(info)
    if not keys:
        raise LeRobotSourceError(f"{root / INFO_FILE}: no video features (images stored in parquet are not read)")
    if camera is None:
        return keys[0]
    if camera not in keys:
        raise LeRobotSourceError(f"{root}: no camera {camera!r}; its video features are: {', '.join(keys)} (--camera KEY)")
    return camera


def is_depth_feature(key: str, feature) -> bool:
    """A depth-map video (lerobot flags it `video.is_depth_map`), or a numeric per-frame image whose name says depth."""
    if not isinstance(feature, dict):
        return False
    if feature.get("dtype") == "video":
        return bool((feature.get("info") or {}).get("video.is_depth_map"))
    shape = feature.get("shape") or []
    image = len(shape) == 2 or (len(shape) == 3 and shape[-1] == 1)
    return image and "depth" in key.lower() and feature.get("dtype") not in ("image", "string")


def pick_depth(root: Path, info: dict, key: str | None) -> str | None:
    """The configured depth feature, or the dataset's only one (None when it has none; several must be named)."""
    found = [k for k, f in info["features"].items() if is_depth_feature(k, f)]
    if key is None:
        if len(found) > 1:
            raise LeRobotSourceError(f"{root}: several depth features ({', '.join(found)}); pick one: --set lerobot.depth_key=KEY")
        return found[0] if found else None
    if key not in found:
        have = ", ".join(found) if found else "none"
        raise LeRobotSourceError(
            f"{root}: no depth feature {key!r} (a video with info video.is_depth_map, or a numeric (H, W[, 1]) feature "
            f"named *depth*); its depth features: {have}"
        )
    return key


def check_keys(root: Path, info: dict, keys: dict[str, str | None]) -> None:
    """Each configured demonstration key names a non-video feature; otherwise list those there are."""
    features = info["features"].items()
    numeric = [k for k, f in features if isinstance(f, dict) and f.get("dtype") not in ("video", "image", "string")]
    for setting, key in keys.items():
        if key is not None and key not in numeric:
            raise LeRobotSourceError(
                f"{root}: no feature {key!r} for lerobot.{setting}; numeric features: {', '.join(numeric)} "
                f"(--set lerobot.{setting}=KEY, or null to store none)"
            )


def _wanted(column: str, features: set[str]) -> bool:
    """Episode columns that are read: the episode's own (index, tasks, length, data file) and, for the features
    read, its video file and span and its statistics (other cameras' and features' are left on disk)."""
    group, _, rest = column.partition("/")
    if group in ("stats", "videos"):
        return rest.partition("/")[0] in features
    return group != "meta"


def episode_rows(root: Path, features: set[str]) -> list[dict]:
    """Every row of meta/episodes/**/*.parquet, by episode_index, with the columns `_wanted` keeps."""
    files = sorted((root / EPISODES_DIR).rglob("*.parquet"))
    if not files:
        raise LeRobotSourceError(f"{root / EPISODES_DIR}: no episode metadata (*.parquet)")
    rows = []
    for f in files:
        try:
            names = [c for c in pq.read_schema(f).names if _wanted(c, features)]
            rows += pq.read_table(f, columns=names).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise LeRobotSourceError(f"{f}: not a readable parquet file ({exc})") from None
    if any(r.get("episode_index") is None or r.get("length") is None for r in rows):
        raise LeRobotSourceError(f"{root / EPISODES_DIR}: rows without episode_index or length")
    return sorted(rows, key=lambda r: r["episode_index"])


def _selected(root: Path, rows: list[dict], wanted: tuple[int, ...] | None) -> list[dict]:
    if wanted is None:
        return rows
    by_index = {r["episode_index"]: r for r in rows}
    unknown = [i for i in wanted if i not in by_index]
    if unknown:
        have = sorted(by_index)
        span = f"{have[0]}-{have[-1]}" if have == list(range(have[0], have[-1] + 1)) else ", ".join(map(str, have))
        raise LeRobotSourceError(f"{root}: no episode {', '.join(map(str, unknown))}; it holds episode_index {span}")
    return [by_index[i] for i in dict.fromkeys(wanted)]


def _path(root: Path, template: str, **fields) -> str:
    try:
        return str(root / template.format(**fields))
    except (KeyError, IndexError, ValueError) as exc:
        raise LeRobotSourceError(f"{root / INFO_FILE}: cannot fill the path template {template!r} ({exc!r})") from None


_SPAN = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")


def _video_span(root: Path, info: dict, row: dict, key: str) -> tuple[str, float, float]:
    """(mp4 path, from seconds, to seconds) of the episode in video feature `key`."""
    v = f"videos/{key}/"
    missing = [v + c for c in _SPAN if row.get(v + c) is None]
    if missing:
        raise LeRobotSourceError(f"{root / EPISODES_DIR}: episode {row['episode_index']} has no {', '.join(missing)}")
    path = _path(root, info["video_path"], video_key=key, chunk_index=row[v + "chunk_index"], file_index=row[v + "file_index"])
    return path, float(row[v + "from_timestamp"]), float(row[v + "to_timestamp"])


def _part(root: Path, info: dict, row: dict, camera: str, depth: str | None, depth_scale: float) -> LeRobotPart:
    missing = [c for c in ("data/chunk_index", "data/file_index") if row.get(c) is None]
    if missing:
        raise LeRobotSourceError(f"{root / EPISODES_DIR}: episode {row['episode_index']} has no {', '.join(missing)}")
    video, from_s, to_s = _video_span(root, info, row, camera)
    given = None
    if depth is not None:
        feature = info["features"][depth]
        if feature.get("dtype") == "video":
            given = LeRobotDepth(depth, depth_scale, *_video_span(root, info, row, depth))
        else:
            given = LeRobotDepth(depth, depth_scale, hw=(int(feature["shape"][0]), int(feature["shape"][1])))
    return LeRobotPart(
        root=str(root),
        index=int(row["episode_index"]),
        camera=camera,
        video=video,
        from_s=from_s,
        to_s=to_s,
        data=_path(root, info["data_path"], chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]),
        length=int(row["length"]),
        fps=float(info["fps"]),
        depth=given,
    )


def features_read(reads: dict) -> list[str]:
    return [v for k, v in reads.items() if (k == "camera" or k.endswith("_key")) and v]


def episode_id(info: dict, row: dict, reads: dict[str, str | None], extraction_key: str) -> str:
    """sha256 of the episode's identity (see the module doc), the settings that change its data and the extraction key."""
    identity = {
        "info": {k: info.get(k) for k in _INFO_IDENTITY},
        "features": {k: info["features"].get(k) for k in features_read(reads)},
        "episode": row,
        "reads": reads,
    }
    text = json.dumps(identity, sort_keys=True, default=str) + extraction_key
    return hashlib.sha256(text.encode()).hexdigest()


def lerobot_sources(root: Path, cfg: IngestConfig) -> list[EpisodeSource]:
    """One EpisodeSource per selected episode of the LeRobot dataset at `root` (kind "lerobot")."""
    root = root.resolve()
    info = read_info(root)
    lr = cfg.lerobot
    camera = pick_camera(root, info, lr.camera)
    check_keys(root, info, {"state_key": lr.state_key, "action_key": lr.action_key})
    depth = pick_depth(root, info, lr.depth_key)
    if cfg.pose.backend == "given":
        raise LeRobotSourceError(
            f"{root}: a LeRobot dataset gives no camera poses to use as given; estimate them: --pose open3d"
        )
    if cfg.depth.backend == "given" and depth is None:
        raise LeRobotSourceError(
            f"{root}: --depth given needs a depth feature (a video with info video.is_depth_map, or a numeric "
            "(H, W[, 1]) feature named *depth*) and this dataset has none; predict depth: --depth depth-anything"
        )
    reads = {"camera": camera, "state_key": lr.state_key, "action_key": lr.action_key}
    if depth:  # only then: datasets without depth keep the ids they had before depth was read
        reads |= {"depth_key": depth, "depth_scale": lr.depth_scale}
    rows = episode_rows(root, features_read(reads))
    key = cfg.extraction_key()
    out = []
    for row in _selected(root, rows, lr.episodes):
        part = _part(root, info, row, camera, depth, lr.depth_scale)
        out.append(
            EpisodeSource(
                uri=f"{root}#episode={part.index}&camera={camera}",
                episode_id=episode_id(info, row, reads, key),
                corpus=cfg.corpus,
                preset=cfg.preset,
                kind="lerobot",
                lerobot=part,
            )
        )
    return out
