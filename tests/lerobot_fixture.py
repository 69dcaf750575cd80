"""The shared LeRobot v3 fixture (`../shared/lerobot/mu0_fixture`, written by lerobot 0.4.4) and its formulas.

Every value in it is a function of (episode e, frame f), given in ../shared/lerobot/README.md; the functions
here restate them so tests can assert exact states and actions and patch-mean pixels within the AV1
tolerance. `writable_copy` gives a copy to break on purpose; `split_last_episode` moves episode 2 into its
own data file and video file (another chunk), as a large dataset has them; `add_depth_column` gives it depth.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO.parent / "shared" / "lerobot" / "mu0_fixture"
LENGTHS = (25, 30, 20)
TASKS = ("open the drawer", "push the block left", "press the button")
FRONT, WRIST = "observation.images.front", "observation.images.wrist"
COLOURS = np.array([(220, 40, 40), (40, 200, 60), (40, 60, 220)], np.float64)
EPISODES_FILE = Path("meta/episodes/chunk-000/file-000.parquet")
DATA_FILE = Path("data/chunk-000/file-000.parquet")
DEPTH_KEY = "observation.depth"  # added by add_depth_column; the fixture itself has no depth


def fixture_root() -> Path:
    if not (FIXTURE / "meta" / "info.json").is_file():
        pytest.skip(f"{FIXTURE} (the shared LeRobot fixture) is absent on this machine")
    return FIXTURE


def state(e: int, f: int) -> np.ndarray:
    return np.array([100 * e + f + j / 10 for j in range(8)], np.float64).astype(np.float32)


def action(e: int, f: int) -> np.ndarray:
    return np.array([-(100 * e + f) - j / 100 for j in range(7)], np.float64).astype(np.float32)


def front(e: int, f: int) -> np.ndarray:
    """(96, 128, 3) float64: the checkerboard and episode e's square at frame f."""
    y, x = np.mgrid[:96, :128]
    img = np.where(((y // 16 + x // 16 + e) % 2 == 1)[..., None], 150.0, 60.0) * np.ones(3)
    x0, y0 = 4 + 3 * f, 12 + 24 * e
    img[y0 : y0 + 24, x0 : x0 + 24] = COLOURS[e]
    return img


def front_patches(e: int, f: int) -> dict[str, tuple[slice, slice, np.ndarray]]:
    """Flat regions of the front image: (rows, cols, expected RGB)."""
    x0, y0 = 4 + 3 * f, 12 + 24 * e
    return {
        "square": (slice(y0 + 8, y0 + 16), slice(x0 + 8, x0 + 16), COLOURS[e]),
        "background": (slice(84, 92), slice(116, 124), np.full(3, 150.0 if e % 2 else 60.0)),
    }


def wrist_patches(e: int, f: int) -> dict[str, tuple[slice, slice, np.ndarray]]:
    y0, x0 = [(0, 0), (0, 48), (48, 48), (48, 0)][f % 4]
    return {
        "block": (slice(y0 + 4, y0 + 12), slice(x0 + 4, x0 + 12), COLOURS[e]),
        "gray": (slice(28, 36), slice(28, 36), np.full(3, 20.0 + 7 * f)),
    }


def writable_copy(dst: Path) -> Path:
    """A copy of the fixture whose files may be edited (the shared one is read-only)."""
    shutil.copytree(fixture_root(), dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def edit_info(root: Path, **changes) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, **changes}, indent=2))


def edit_episode(root: Path, index: int, **columns) -> None:
    """Set columns of one row of meta/episodes (schema and other rows kept)."""
    path = root / EPISODES_FILE
    table = pq.read_table(path)
    hit = pc.equal(table["episode_index"], index)
    for name, value in columns.items():
        col = table[name]
        new = pc.if_else(hit, pa.scalar(value, col.type), col)
        table = table.set_column(table.schema.get_field_index(name), name, new)
    pq.write_table(table, path)


def _remux(src: Path, dst: Path, start_s: float, end_s: float) -> None:
    """Packets of [start_s, end_s) (starting on a keyframe) into a new mp4, times shifted to start at 0
    (no re-encoding)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in, opaque=True)
        shift, end = (int(round(t / s_in.time_base)) for t in (start_s, end_s))
        for packet in inp.demux(s_in):
            if packet.dts is None or not shift <= packet.pts < end:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = s_out
            out.mux(packet)


def split_last_episode(root: Path) -> None:
    """Episode 2 (frames 55-74, 5.5-7.5 s) moves to data/chunk-001/file-000.parquet and, per camera, to
    videos/K/chunk-001/file-000.mp4 starting at 0 s; the first files keep episodes 0 and 1 only."""
    data = pq.read_table(root / DATA_FILE)
    last = pc.equal(data["episode_index"], 2)
    (root / "data/chunk-001").mkdir()
    pq.write_table(data.filter(last), root / "data/chunk-001/file-000.parquet")
    pq.write_table(data.filter(pc.invert(last)), root / DATA_FILE)
    changes: dict = {"data/chunk_index": 1}
    for key in (FRONT, WRIST):
        whole = root / f"videos/{key}/chunk-000/file-000.mp4"
        _remux(whole, root / f"videos/{key}/chunk-001/file-000.mp4", 5.5, 7.5)
        _remux(whole, whole.with_suffix(".tmp.mp4"), 0.0, 5.5)
        whole.with_suffix(".tmp.mp4").replace(whole)
        changes |= {f"videos/{key}/chunk_index": 1, f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": 2.0}
    edit_episode(root, 2, **changes)


def depth_mm(e: int, f: int) -> np.ndarray:
    """(96, 128) uint16 millimetres: 500 + 10 f + 100 e + x."""
    return (500 + 10 * f + 100 * e + np.arange(128))[None, :].repeat(96, 0).astype(np.uint16)


def add_depth_column(root: Path) -> Path:
    """`observation.depth` (uint16 mm, (96, 128), `depth_mm`) in the data rows; episode 1 frame 3 has a 10x10 hole of 0s."""
    data = pq.read_table(root / DATA_FILE)
    maps = []
    for e, f in zip(data["episode_index"].to_pylist(), data["frame_index"].to_pylist()):
        d = depth_mm(e, f)
        if (e, f) == (1, 3):
            d[10:20, 30:40] = 0  # unknown, as sensors write it
        maps.append(d.tolist())
    pq.write_table(data.append_column(DEPTH_KEY, pa.array(maps, pa.list_(pa.list_(pa.uint16())))), root / DATA_FILE)
    info = json.loads((root / "meta/info.json").read_text())
    edit_info(root, features={**info["features"], DEPTH_KEY: {"dtype": "uint16", "shape": [96, 128], "names": None}})
    return root
