"""A hand-built Episode goes to table rows, through a commit, and back with the same values."""

import json

import cv2
import numpy as np
import pytest

from storage import query
from storage import schema as S
from storage.dataset import open_table
from storage.demonstrations import read_demonstrations
from storage.writer import commit, write_uncommitted
from tasks.config import IngestConfig, RetargetConfig
from tasks.extract.rows import episode_tables
from tasks.types import PIPELINE_VERSION, Episode, EpisodeDemo, EpisodeSource, Samples

T, H, W, N, L, LH = 4, 24, 32, 3, 4, 2
CFG = IngestConfig(preset="sim", corpus="unit", retarget=RetargetConfig(future_len=L, history_len=LH), jpeg_quality=95)


def make_episode() -> Episode:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([xx * 8, yy * 10, np.full_like(xx, 40 * t)], -1) for t in range(T)]).astype(np.uint8)
    depth = (1.0 + 0.01 * rng.random((T, H, W))).astype(np.float32)
    depth[0, 0, 0] = np.nan
    xyz = rng.normal(size=(N, T, 3)).astype(np.float32)
    xyz[1, 2] = np.nan  # unknown 3D at one frame
    visible = np.isfinite(xyz).all(-1)
    M = 5  # keypoints over 2 sample frames: 2 at t=0, 3 at t=2
    fut = rng.normal(size=(M, L, 3)).astype(np.float32)
    fut[0, 3] = np.nan
    fut_valid = np.isfinite(fut).all(-1)
    samples = Samples(
        frames=np.array([0, 2], np.int32),
        offsets=np.array([0, 2, 5], np.int64),
        track_index=np.array([0, 2, 0, 1, 2], np.int32),
        keypoints_uv=rng.random((M, 2)).astype(np.float32) * 30,
        future=fut,
        future_valid=fut_valid,
        history=rng.normal(size=(M, LH, 3)).astype(np.float32),
        history_valid=np.ones((M, LH), bool),
        cluster_id=np.array([0, 1, 0, 0, 1], np.int32),
    )
    return Episode(
        source=EpisodeSource(uri="/data/ep0", episode_id="ep0", corpus="unit"),
        frames=frames,
        frame_index=np.array([0, 3, 6, 9], np.int32),
        fps=10.0 / 3,
        depth=depth,
        K=np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]),
        w2c=np.tile(np.eye(4), (T, 1, 1)) + 0.125,
        depth_source="given",
        pose_source="given",
        meta={"instruction": "open the drawer", "task": "drawer-open", "embodiment": "sawyer"},
        query_frame=np.array([0, 1, 0], np.int32),
        query_uv=np.array([[1.5, 2.5], [3, 4], [5, 6]], np.float32),
        cluster_id=np.array([0, 1, 0], np.int32),
        tracks_uv=np.zeros((N, T, 2), np.float32),
        visible=visible,
        tracks_xyz=xyz,
        is_moving=np.array([True, False, True]),
        track_coverage=0.75,
        samples=samples,
        errors={"captions": "skipped: no VLM"},
    )


def write_all(root: str, *eps: Episode) -> None:
    frags: dict[str, list[str]] = {}
    for ep in eps:
        for name, table in episode_tables(ep, CFG).items():
            if table.num_rows:
                sch = S.samples_schema(L, LH) if name == "samples" else table.schema
                frags.setdefault(name, []).extend(write_uncommitted(root, name, table, sch))
    for name, fs in frags.items():
        commit(root, name, fs, S.samples_schema(L, LH) if name == "samples" else getattr(S, name.upper()), "t")


def test_episode_round_trips(tmp_path):
    ep, root = make_episode(), str(tmp_path)
    write_all(root, ep)
    [row] = query.episodes(root).to_pylist()
    assert row["episode_id"] == "ep0" and row["status"] == "ok" and row["corpus"] == "unit" and row["preset"] == "sim"
    assert row["fps"] == pytest.approx(np.float32(10 / 3)) and row["n_frames"] == T
    assert row["frame_index"] == [0, 3, 6, 9] and (row["width"], row["height"]) == (W, H)
    np.testing.assert_array_equal(np.array(row["K"], np.float32), ep.K.reshape(9).astype(np.float32))
    np.testing.assert_array_equal(np.array(row["w2c"], np.float32), ep.w2c.reshape(T, 16).astype(np.float32))
    assert json.loads(row["errors"]) == {"captions": "skipped: no VLM"}
    assert (row["n_tracks"], row["n_moving"], row["n_samples"], row["track_coverage"]) == (3, 2, 5, 0.75)
    assert (row["instruction"], row["task"], row["embodiment"]) == ("open the drawer", "drawer-open", "sawyer")
    assert row["pipeline_version"] == PIPELINE_VERSION and row["ingested_at"].tzinfo is not None
    assert IngestConfig.model_validate_json(row["config"]) == CFG


def test_tracks_round_trip_with_nan(tmp_path):
    ep, root = make_episode(), str(tmp_path)
    write_all(root, ep)
    t = query.tracks_of(root, "ep0")
    assert t["track_id"].to_pylist() == [0, 1, 2] and t["query_frame"].to_pylist() == [0, 1, 0]
    np.testing.assert_array_equal(np.array(t["query_uv"].to_pylist(), np.float32), ep.query_uv)
    xyz = np.array(t["xyz"].to_pylist(), np.float32)
    np.testing.assert_array_equal(xyz, ep.tracks_xyz)  # NaN positions included (assert_array_equal: NaN == NaN)
    assert np.isnan(xyz[1, 2]).all() and np.isfinite(xyz[0]).all()
    assert t["visible"].to_pylist() == ep.visible.tolist()
    assert t["cluster_id"].to_pylist() == [0, 1, 0] and t["is_moving"].to_pylist() == [True, False, True]


def test_samples_round_trip(tmp_path):
    ep, root = make_episode(), str(tmp_path)
    write_all(root, ep)
    s, src = query.samples_of(root, "ep0"), ep.samples
    assert s["frame"].to_pylist() == [0, 2] and s["caption_ids"].to_pylist() == [[], []]
    assert s["track_id"].to_pylist() == [[0, 2], [0, 1, 2]] and s["cluster_id"].to_pylist() == [[0, 1], [0, 0, 1]]
    for i, (a, b) in enumerate([(0, 2), (2, 5)]):
        np.testing.assert_array_equal(np.array(s["keypoints_uv"][i].as_py(), np.float32), src.keypoints_uv[a:b])
        np.testing.assert_array_equal(np.array(s["future"][i].as_py(), np.float32), src.future[a:b])
        np.testing.assert_array_equal(np.array(s["history"][i].as_py(), np.float32), src.history[a:b])
        assert s["future_valid"][i].as_py() == src.future_valid[a:b].tolist()
        assert s["history_valid"][i].as_py() == src.history_valid[a:b].tolist()
    assert s["future_valid"][0].as_py()[0] == [True, True, True, False]


def test_frames_are_jpeg_and_png16_blobs(tmp_path):
    ep, root = make_episode(), str(tmp_path)
    write_all(root, ep)
    for t in range(T):
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(query.frame_jpeg(root, "ep0", t), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert rgb.shape == (H, W, 3) and np.abs(rgb.astype(int) - ep.frames[t]).mean() < 3  # RGB order kept
    ds = open_table(root, "frames")
    [blob] = ds.take_blobs("depth_png16", indices=[1])
    mm = cv2.imdecode(np.frombuffer(blob.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16 and mm.shape == (H, W)
    np.testing.assert_array_equal(mm, np.round(ep.depth[1] * 1000).astype(np.uint16))
    [blob0] = ds.take_blobs("depth_png16", indices=[0])
    assert cv2.imdecode(np.frombuffer(blob0.read(), np.uint8), cv2.IMREAD_UNCHANGED)[0, 0] == 0  # NaN -> 0 mm


def test_failed_episode_gives_only_its_episode_row(tmp_path):
    src = EpisodeSource(uri="/data/broken.mp4", episode_id="bad", corpus="unit", kind="video")
    bad = Episode(source=src, status="failed", errors={"decode": "no video stream"})
    tables = episode_tables(bad, CFG)
    assert {k: v.num_rows for k, v in tables.items()} == {
        "episodes": 1, "tracks": 0, "samples": 0, "frames": 0, "captions": 0, "demonstrations": 0
    }
    root = str(tmp_path)
    write_all(root, make_episode(), bad)
    [row] = query.episodes(root, where="status = 'failed'").to_pylist()
    assert (row["episode_id"], row["n_frames"], row["frame_index"], row["w2c"], row["width"]) == ("bad", 0, [], [], 0)
    assert np.isnan(row["K"]).all() and len(row["K"]) == 9 and np.isnan(row["track_coverage"])
    assert json.loads(row["errors"]) == {"decode": "no video stream"}
    assert query.counts(root) == {"episodes": 2, "tracks": 3, "samples": 2, "frames": 4}


def test_rejected_episode_keeps_tracks_and_frames_but_no_samples():
    tables = episode_tables(make_episode().replace(status="rejected", depth=None), CFG)
    assert {k: v.num_rows for k, v in tables.items()} == {
        "episodes": 1, "tracks": 3, "samples": 0, "frames": 4, "captions": 0, "demonstrations": 0
    }
    assert tables["frames"]["depth_png16"].null_count == 4


def with_demo(ep: Episode, steps: int = 10) -> Episode:
    """10 source steps (frames 0, 3, 6, 9 stored), 3-d states and 2-d actions that encode the step."""
    i = np.arange(steps)[:, None]
    states, actions = (i + [0.0, 0.1, 0.2]).astype(np.float32), (-i - [0.0, 0.5]).astype(np.float32)
    demo = EpisodeDemo(states=states, actions=actions, timestamps_s=np.arange(steps) * 0.1, fps=10.0)
    return ep.replace(demo=demo)


def test_a_demonstration_is_stored_whole_with_the_stored_frame_of_each_step(tmp_path):
    ep, root = with_demo(make_episode()), str(tmp_path)
    write_all(root, ep)
    rows = open_table(root, "demonstrations").to_table().sort_by("frame_index").to_pydict()
    assert rows["frame_index"] == list(range(10)) and rows["frame"] == [0, None, None, 1, None, None, 2, None, None, 3]
    assert rows["source_episode_index"] == [None] * 10 and rows["fps"] == [10.0] * 10
    d = read_demonstrations(root)["ep0"]
    assert np.array_equal(d.states, ep.demo.states) and np.array_equal(d.actions, ep.demo.actions)
    assert np.array_equal(d.frames, [0, -1, -1, 1, -1, -1, 2, -1, -1, 3]) and d.instruction == "open the drawer"
    assert np.array_equal(d.timestamps, (np.arange(10) * 0.1).astype(np.float32))


def test_demonstrations_follow_the_episode_status():
    ep = with_demo(make_episode())
    assert episode_tables(ep.replace(status="rejected"), CFG)["demonstrations"].num_rows == 10
    assert episode_tables(ep.replace(status="failed"), CFG)["demonstrations"].num_rows == 0
    only_actions = EpisodeDemo(np.zeros((10, 0), np.float32), ep.demo.actions, ep.demo.timestamps_s, 10.0, 7)
    rows = episode_tables(ep.replace(demo=only_actions), CFG)["demonstrations"].to_pydict()
    assert rows["state"] == [[]] * 10 and rows["source_episode_index"] == [7] * 10
