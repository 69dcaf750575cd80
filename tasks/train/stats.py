"""Dataset statistics that training needs: `delta_scale` and the depth colormap range.

`delta_scale` (docs/method.md#model-target-space) is the per-axis 95th percentile of |future - current|
over valid steps 1..H, with (u, v) normalised to [-1, 1] by the episode's width/height and z in
meters. Depth p1/p99 set the log-depth turbo colormap of the depth input. The result is stored
beside the dataset as `<dataset>/stats.json` together with the table versions it was computed at,
and recomputed when the dataset has moved on (a new ingest commits new versions).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow.fs as pafs
from pydantic import BaseModel, Field

from models.bspline import delta_scale
from storage.dataset import open_table
from storage.frame_codec import decode_depth_png16
from storage.torch_loader import dataset_versions

STATS_FILE = "stats.json"


class TraceStats(BaseModel, frozen=True):
    """What `tasks/train/batches.py` needs to build targets and depth images for a dataset."""

    versions: dict[str, int] = Field(description="table versions the stats were computed at")
    horizon: int = Field(description="future steps (1..H after the anchor) the deltas span")
    delta_scale: tuple[float, float, float] = Field(description="per-axis p95 of |delta| (u_n, v_n, z m)")
    depth_p1: float = Field(description="1st percentile of valid depth (m)")
    depth_p99: float = Field(description="99th percentile of valid depth (m)")
    depth_from: str = Field(description="'frames' (depth maps), 'keypoints' (trace z) or 'none'")
    n_episodes: int
    n_samples: int = Field(description="sample rows (episode, frame)")
    n_keypoints: int = Field(description="keypoints over all sample rows")
    n_valid_steps: int = Field(description="valid future steps 1..H over all keypoints")
    computed_at: str = ""


def _deltas_of_batch(batch, sizes: dict[str, tuple[int, int]], horizon: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Normalised anchor-relative deltas (M, H, 3), validity (M, H) and the keypoint count of a batch."""
    fut_type = batch.schema.field("future").type.value_type
    L = fut_type.list_size
    eids = batch.column("episode_id").to_pylist()
    counts = np.diff(batch.column("future").offsets.to_numpy())
    flat = batch.column("future").values.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, L, 3)
    valid = batch.column("future_valid").values.flatten().to_numpy(zero_copy_only=False).reshape(-1, L)
    wh = np.repeat(np.asarray([sizes.get(e, (1, 1)) for e in eids], np.float64).reshape(-1, 2), counts, axis=0)
    H = min(horizon, L - 1)
    fut = flat[:, : H + 1].astype(np.float64)
    uv = (fut[..., :2] + 0.5) / wh[:, None, :] * 2.0 - 1.0  # = bspline.normalize_pixels, per episode
    fut = np.concatenate([uv, fut[..., 2:3]], axis=-1)
    d = fut[:, 1:] - fut[:, :1]
    return d, valid[:, 1 : H + 1] & valid[:, :1], int(flat.shape[0])


def _depth_percentiles(root: str, max_frames: int, seed: int) -> tuple[float, float, str] | None:
    frames = open_table(root, "frames")
    if frames is None or frames.count_rows() == 0:
        return None
    n = frames.count_rows()
    rows = np.unique(np.linspace(0, n - 1, num=min(max_frames, n)).round().astype(np.int64))
    rng = np.random.default_rng(seed)
    values = []
    for r in rows:
        blob = frames.take_blobs("depth_png16", indices=[int(r)])[0]
        data = blob.read() if blob is not None else b""
        if not data:
            continue
        d = decode_depth_png16(data)
        d = d[d > 0]  # unknown and the far cap decode to NaN
        if d.size:
            values.append(rng.choice(d, size=min(d.size, 20000), replace=False))
    if not values:
        return None
    v = np.concatenate(values)
    return float(np.percentile(v, 1)), float(np.percentile(v, 99)), "frames"


def compute_trace_stats(root: str, horizon: int = 32, max_depth_frames: int = 64, max_steps: int = 4_000_000, seed: int = 0) -> TraceStats:
    """Scan `samples` once (column batches), subsampling to at most `max_steps` valid deltas."""
    samples = open_table(root, "samples")
    if samples is None:
        raise FileNotFoundError(f"{root} has no 'samples' table: ingest something first")
    eps = open_table(root, "episodes")
    sizes = {}
    if eps is not None:
        for r in eps.to_table(columns=["episode_id", "width", "height"]).to_pylist():
            sizes[r["episode_id"]] = (r["width"] or 1, r["height"] or 1)
    rng = np.random.default_rng(seed)
    kept, z_vals = [], []
    n_rows = n_kp = n_valid = 0
    episodes = set()
    for batch in samples.to_batches(columns=["episode_id", "future", "future_valid"], batch_size=256):
        d, m, k = _deltas_of_batch(batch, sizes, horizon)
        episodes.update(batch.column("episode_id").to_pylist())
        n_rows += batch.num_rows
        n_kp += k
        sel = d[m]
        n_valid += sel.shape[0]
        if sel.shape[0] > max_steps // 8:
            sel = sel[rng.choice(sel.shape[0], max_steps // 8, replace=False)]
        kept.append(np.abs(sel).astype(np.float32))
        z_vals.append(rng.permutation(sel[:, 2])[:10000] if sel.size else np.zeros(0))
    deltas = np.concatenate(kept) if kept else np.zeros((0, 3), np.float32)
    if deltas.shape[0] > max_steps:
        deltas = deltas[rng.choice(deltas.shape[0], max_steps, replace=False)]
    scale = delta_scale(deltas[:, None, :], np.ones((deltas.shape[0], 1), bool))
    depth = _depth_percentiles(root, max_depth_frames, seed)
    if depth is None:
        depth = _keypoint_depth(samples)
    return TraceStats(
        versions=dataset_versions(root),
        horizon=horizon,
        delta_scale=tuple(float(x) for x in scale),
        depth_p1=depth[0],
        depth_p99=depth[1],
        depth_from=depth[2],
        n_episodes=len(episodes),
        n_samples=n_rows,
        n_keypoints=n_kp,
        n_valid_steps=n_valid,
        computed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _keypoint_depth(samples) -> tuple[float, float, str]:
    """Fallback without depth maps: the range of the keypoints' own z at their anchor."""
    z = []
    for batch in samples.to_batches(columns=["future"], batch_size=256):
        L = batch.schema.field("future").type.value_type.list_size
        f = batch.column("future").values.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, L, 3)
        z.append(f[:, 0, 2])
    v = np.concatenate(z) if z else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 0.1, 10.0, "none"
    return float(np.percentile(v, 1)), float(np.percentile(v, 99)), "keypoints"


def _fs(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" in root:
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), str(root)


def read_stats(root: str) -> TraceStats | None:
    fs, path = _fs(root)
    target = f"{path.rstrip('/')}/{STATS_FILE}"
    if fs.get_file_info(target).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(target) as f:
        return TraceStats.model_validate(json.loads(f.read().decode()))


def write_stats(root: str, stats: TraceStats) -> str:
    fs, path = _fs(root)
    target = f"{path.rstrip('/')}/{STATS_FILE}"
    with fs.open_output_stream(target) as f:
        f.write(stats.model_dump_json(indent=2).encode())
    return target


def ensure_trace_stats(root: str, horizon: int = 32, force: bool = False) -> TraceStats:
    """The stored stats if they match the dataset's current versions and horizon, else recomputed."""
    old = None if force else read_stats(root)
    if old is not None and old.versions == dataset_versions(root) and old.horizon == horizon:
        return old
    stats = compute_trace_stats(root, horizon=horizon)
    write_stats(root, stats)
    return stats
