"""Uncommitted fragments from several writers, one commit per table, tags and time travel."""

import multiprocessing as mp

import lance
import pyarrow as pa

from storage import schema as S
from storage.dataset import describe, existing_episode_ids, open_table
from storage.query import frame_jpeg
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


def _worker(args):
    root, eid = args
    return write_uncommitted(root, "frames", frames_table(eid, 3), S.FRAMES)


def test_workers_write_driver_commits_once(tmp_path):
    root = str(tmp_path)
    with mp.get_context("spawn").Pool(2) as pool:
        frags = [f for fs in pool.map(_worker, [(root, "a"), (root, "b")]) for f in fs]
    assert open_table(root, "frames") is None  # nothing visible before the commit
    v1 = commit(root, "frames", frags, S.FRAMES, tag="ingest-1")
    assert v1 == 1 and open_table(root, "frames").count_rows() == 6
    v2 = commit(root, "frames", _worker((root, "c")), S.FRAMES, tag="ingest-2")
    ds = open_table(root, "frames")
    assert v2 == 2 and ds.count_rows() == 9
    assert open_table(root, "frames", version="ingest-1").count_rows() == 6
    assert frame_jpeg(root, "c", 2) == b"c-2"
    assert commit(root, "frames", [], S.FRAMES) is None


def test_commits_from_the_same_read_version_both_land(tmp_path):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES)
    a, b = _worker((root, "b")), _worker((root, "c"))
    commit(root, "frames", a, S.FRAMES)
    commit(root, "frames", b, S.FRAMES)
    assert open_table(root, "frames").count_rows() == 9


def test_retagging_keeps_both_versions_findable(tmp_path):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES, tag="t")
    commit(root, "frames", _worker((root, "b")), S.FRAMES, tag="t")
    assert set(open_table(root, "frames").tags.list()) == {"t", "t-2"}


def test_index_and_describe(tmp_path):
    root = str(tmp_path)
    commit(root, "frames", _worker((root, "a")), S.FRAMES)
    ensure_indexes(root)
    ds = open_table(root, "frames")
    assert any(i["type"] == "BTree" or "BTREE" in str(i["type"]).upper() for i in ds.list_indices())
    plan = ds.scanner(filter="episode_id = 'a'").explain_plan()
    assert "ScalarIndexQuery" in plan or "MaterializeIndex" in plan or "Index" in plan
    assert describe(root)[0]["rows"] == 3
    assert existing_episode_ids(root) == set()  # no episodes table yet


def test_missing_tables_read_as_absent(tmp_path):
    assert open_table(str(tmp_path), "episodes") is None and existing_episode_ids(str(tmp_path)) == set()
