"""Uncommitted fragments from several writers, one commit per table, tags, time travel, races."""

import multiprocessing as mp

import lance
import pyarrow as pa
import pytest

import storage.writer as W
from storage import schema as S
from storage.dataset import describe, existing_episode_ids, open_table
from storage.query import counts, episodes, frame_jpeg
from storage.writer import commit, ensure_indexes, write_uncommitted


def frames_table(eid: str, n: int) -> pa.Table:
    return pa.table(
        {
            "episode_id": [eid] * n,
            "frame": pa.array(range(n), pa.int32()),
            "jpeg": lance.blob_array([f"{eid}-{i}".encode() for i in range(n)]),
            "depth_png16": lance.blob_array([None] * n),
        },
        schema=S.FRAMES,
    )


def episode_rows(*eids: str) -> pa.Table:
    return pa.Table.from_pylist([{"episode_id": e, "status": "ok", "n_frames": 3} for e in eids], schema=S.EPISODES)


def _worker(args):
    root, eid = args
    return write_uncommitted(root, "frames", frames_table(eid, 3), S.FRAMES)


def _committer(args):
    """A whole driver in its own process: write and commit its episodes one by one."""
    root, eids = args
    return [commit(root, "frames", _worker((root, e)), S.FRAMES) for e in eids]


def frame_ids(root: str, version=None) -> list[tuple[str, int]]:
    t = open_table(root, "frames", version=version).to_table(columns=["episode_id", "frame"])
    return sorted(zip(t["episode_id"].to_pylist(), t["frame"].to_pylist()))


def test_workers_write_driver_commits_once(tmp_path):
    root = str(tmp_path)
    with mp.get_context("spawn").Pool(2) as pool:  # fragments of a table that does not exist yet
        frags = [f for fs in pool.map(_worker, [(root, "a"), (root, "b")]) for f in fs]
    assert all(isinstance(f, str) for f in frags)  # JSON crosses the process boundary
    assert open_table(root, "frames") is None  # nothing visible before the commit
    assert commit(root, "frames", frags, S.FRAMES, tag="ingest-1") == 1
    assert frame_ids(root) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert commit(root, "frames", _worker((root, "c")), S.FRAMES, tag="ingest-2") == 2
    ds = open_table(root, "frames")
    assert ds.count_rows() == 9 and ds.tags.list()["ingest-1"]["version"] == 1
    assert ds.tags.list()["ingest-2"]["version"] == 2
    # time travel to the tagged run, by tag and by number
    assert frame_ids(root, "ingest-1") == frame_ids(root, 1) == [(e, i) for e in "ab" for i in range(3)]
    assert frame_jpeg(root, "c", 2) == b"c-2" and frame_jpeg(root, "a", 0) == b"a-0"
    with pytest.raises(KeyError):
        frame_jpeg(root, "c", 3)
    assert commit(root, "frames", [], S.FRAMES, tag="empty") is None
    assert open_table(root, "frames").version == 2 and "empty" not in open_table(root, "frames").tags.list()


def test_existing_episode_ids_and_describe(tmp_path):
    root = str(tmp_path)
    assert existing_episode_ids(root) == set() and describe(root) == [] and counts(root) == {}
    commit(root, "episodes", write_uncommitted(root, "episodes", episode_rows("e1", "e2"), S.EPISODES), S.EPISODES, "r1")
    commit(root, "episodes", write_uncommitted(root, "episodes", episode_rows("e3"), S.EPISODES), S.EPISODES, "r2")
    assert existing_episode_ids(root) == {"e1", "e2", "e3"}
    assert episodes(root, where="episode_id = 'e3'", columns=["episode_id", "n_frames"]).to_pylist() == [
        {"episode_id": "e3", "n_frames": 3}
    ]
    [d] = describe(root)
    assert (d["table"], d["rows"], d["version"], d["tags"]) == ("episodes", 3, 2, ["r1", "r2"])
    assert counts(root) == {"episodes": 3}


def test_commits_from_the_same_read_version_both_land(tmp_path, monkeypatch):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES)
    stale = open_table(root, "frames")  # both drivers read version 1 before either commits
    monkeypatch.setattr(W, "open_table", lambda *_: stale)
    a, b = _worker((root, "b")), _worker((root, "c"))
    assert commit(root, "frames", a, S.FRAMES) == 2
    assert commit(root, "frames", b, S.FRAMES) == 3
    assert [e for e, _ in frame_ids(root)] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_losing_the_race_to_create_appends_instead_of_overwriting(tmp_path, monkeypatch):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES)
    calls = []
    real = W.open_table

    def looked_before_the_other_driver_created_it(*args):
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    monkeypatch.setattr(W, "open_table", looked_before_the_other_driver_created_it)
    assert commit(root, "frames", _worker((root, "b")), S.FRAMES) == 2
    assert len(calls) == 2  # first try failed (no silent overwrite), second appended
    assert [e for e, _ in frame_ids(root)] == ["a"] * 3 + ["b"] * 3


def test_concurrent_drivers_in_processes_lose_nothing(tmp_path):
    root = str(tmp_path)
    with mp.get_context("spawn").Pool(2) as pool:
        versions = pool.map(_committer, [(root, ["a", "b", "c"]), (root, ["x", "y", "z"])])
    assert sorted(v for vs in versions for v in vs) == [1, 2, 3, 4, 5, 6]
    assert sorted({e for e, _ in frame_ids(root)}) == ["a", "b", "c", "x", "y", "z"]
    assert open_table(root, "frames").count_rows() == 18


def test_retagging_keeps_both_versions_findable(tmp_path):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES, tag="t")
    commit(root, "frames", _worker((root, "b")), S.FRAMES, tag="t")
    tags = open_table(root, "frames").tags.list()
    assert {k: v["version"] for k, v in tags.items()} == {"t": 1, "t-2": 2}


def test_indexes_cover_appended_rows(tmp_path):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES)
    assert ensure_indexes(root) == {"frames": "created"}
    commit(root, "frames", _worker((root, "b")), S.FRAMES)
    assert ensure_indexes(root) == {"frames": "updated"}
    version = open_table(root, "frames").version
    assert ensure_indexes(root) == {"frames": "current"}
    ds = open_table(root, "frames")
    assert ds.version == version  # nothing to do, no new version
    [idx] = ds.describe_indices()
    assert list(idx.field_names) == ["episode_id"] and "BTree" in idx.type_url
    assert ds.stats.index_stats(idx.name)["num_unindexed_rows"] == 0
    assert "ScalarIndexQuery" in ds.scanner(filter="episode_id = 'b'").explain_plan()
    assert frame_ids(root) == [(e, i) for e in "ab" for i in range(3)]


def test_missing_tables_read_as_absent(tmp_path):
    root = str(tmp_path)
    assert open_table(root, "episodes") is None and existing_episode_ids(root) == set()
    assert ensure_indexes(root) == {}
    with pytest.raises(FileNotFoundError):
        frame_jpeg(root, "a", 0)
