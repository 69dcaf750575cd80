"""A LeRobot dataset's depth feature read as given depth: an array column of the data rows, or a depth-map video.

The fixture has no depth, so each test adds one to a copy with a known formula (tests/lerobot_fixture.py:
`add_depth_column`, millimetres read with `lerobot.depth_scale=0.001`; a grey-level depth-map video here).
"""

from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.config import get_preset, with_overrides
from tasks.extract.decode import decode
from tasks.run.discover import SourceError, discover
from tests.lerobot_fixture import (
    DEPTH_KEY, EPISODES_FILE, FRONT, LENGTHS, add_depth_column, depth_mm, edit_info, writable_copy,
)

GIVEN = with_overrides(
    get_preset("generic"), {"depth.backend": "given", "pose.backend": "open3d", "lerobot.depth_scale": 0.001}
)
H, W = 96, 128
VIDEO_KEY = "observation.images.depth"


def decoded(root, settings: dict | None = None):
    cfg = with_overrides(GIVEN, settings or {})
    return [decode(s, cfg.decode, 1, cfg.lerobot) for s in discover(str(root), cfg)]


@pytest.fixture()
def column_depth(tmp_path):
    return add_depth_column(writable_copy(tmp_path / "ds"))


def test_a_depth_column_is_given_depth_in_meters_with_zero_as_unknown(column_depth):
    eps = decoded(column_depth)
    assert [ep.n_frames for ep in eps] == list(LENGTHS)
    for e, ep in enumerate(eps):
        assert ep.depth_source == "given" and ep.meta["depth_feature"] == DEPTH_KEY
        want = np.stack([depth_mm(e, f) for f in range(LENGTHS[e])]).astype(np.float32) * np.float32(0.001)
        if e == 1:
            want[3, 10:20, 30:40] = np.nan
        np.testing.assert_allclose(ep.depth, want, rtol=1e-6)
    assert np.isnan(eps[1].depth[3]).sum() == 100


def test_subsampled_depth_follows_the_kept_frames(column_depth):
    e, ep = 2, decoded(column_depth, {"decode.target_fps": 5.0})[2]
    assert list(ep.frame_index) == list(range(0, LENGTHS[e], 2))
    np.testing.assert_allclose(ep.depth[:, 0, 0], (500 + 10 * np.arange(0, LENGTHS[e], 2) + 200) * 0.001, rtol=1e-6)


def test_depth_given_without_a_depth_feature_and_an_unknown_depth_key_are_refused(column_depth, tmp_path):
    plain = writable_copy(tmp_path / "plain")
    with pytest.raises(SourceError, match="needs a depth feature .* --depth depth-anything"):
        discover(str(plain), GIVEN)
    with pytest.raises(SourceError, match=f"no depth feature 'nope'.*its depth features: {DEPTH_KEY}"):
        discover(str(column_depth), with_overrides(GIVEN, {"lerobot.depth_key": "nope"}))


def test_reading_depth_changes_the_episode_ids_and_only_then(column_depth, tmp_path):
    plain = writable_copy(tmp_path / "plain")
    cfg = with_overrides(GIVEN, {"depth.backend": "depth-anything"})
    before = [s.episode_id for s in discover(str(plain), cfg)]
    assert before == [s.episode_id for s in discover(str(plain), cfg)]
    assert not set(before) & {s.episode_id for s in discover(str(column_depth), cfg)}


def _write_depth_video(path, n: int) -> None:
    """Gray frames whose value is 100 + 2 * (global frame number) at 10 fps: the depth maps of every episode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        for i in range(n):
            img = np.full((H, W, 3), 100 + 2 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


def test_a_depth_map_video_is_read_from_its_own_slice(tmp_path):
    root = writable_copy(tmp_path / "ds")
    _write_depth_video(root / f"videos/{VIDEO_KEY}/chunk-000/file-000.mp4", sum(LENGTHS))
    info = json.loads((root / "meta/info.json").read_text())
    feature = {**info["features"][FRONT], "info": {**(info["features"][FRONT].get("info") or {}), "video.is_depth_map": True}}
    edit_info(root, features={**info["features"], VIDEO_KEY: feature})
    episodes = pq.read_table(root / EPISODES_FILE)
    for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
        episodes = episodes.append_column(f"videos/{VIDEO_KEY}/{c}", episodes[f"videos/{FRONT}/{c}"])
    pq.write_table(episodes, root / EPISODES_FILE)
    eps = decoded(root, {"lerobot.depth_scale": 0.01})  # 1 cm per grey level
    start = np.cumsum((0, *LENGTHS))
    assert len(eps) == len(LENGTHS)  # an empty discovery must not pass
    for e, ep in enumerate(eps):
        assert ep.meta["depth_feature"] == VIDEO_KEY and ep.depth.shape == (LENGTHS[e], H, W)
        want = (100 + 2 * (start[e] + np.arange(LENGTHS[e]))) * 0.01
        np.testing.assert_allclose(np.nanmedian(ep.depth, axis=(1, 2)), want, atol=0.021)
