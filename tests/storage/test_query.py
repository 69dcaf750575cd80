"""storage.query: SQL filters, full-text, vector and skill search, time travel, readable errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from storage import query
from storage import schema as S
from storage.dataset import describe, open_table
from storage.writer import ensure_indexes
from tests.storage.datasets import CAPTIONS, captions_table, ingested_copy, unit_vectors, write

@pytest.fixture
def captions_root(tmp_path):
    root = str(tmp_path)
    emb = unit_vectors(len(CAPTIONS))
    write(root, "captions", captions_table(embeddings=emb), tag="first")
    ensure_indexes(root)
    return root, emb


def ids(table: pa.Table) -> list[int]:
    return table["caption_id"].to_pylist()


def test_full_text_finds_the_drawer_captions_best_first(captions_root):
    root, _ = captions_root
    hits = query.search(root, "captions", text="drawer")
    assert sorted(ids(hits)) == [0, 1, 2]
    assert hits["_score"].to_pylist() == sorted(hits["_score"].to_pylist(), reverse=True)
    # instruction_2 and _3 are searched too: "backwards" is in neither instruction_1
    assert ids(query.search(root, "captions", text="backwards")) == [1]
    assert sorted(ids(query.search(root, "captions", text="presses"))) == [3, 4]  # stemmed: press/presses
    assert query.search(root, "captions", text="helicopter").num_rows == 0


def test_vector_search_returns_exact_nearest_with_cosine_distance(captions_root):
    root, emb = captions_root
    q = emb[3] + 0.1 * emb[5]
    q /= np.linalg.norm(q)
    hits = query.search(root, "captions", vector=q, limit=3)
    order = np.argsort(-(emb @ q))[:3]
    assert ids(hits) == order.tolist() and ids(hits)[0] == 3
    assert np.allclose(hits["_distance"].to_numpy(), 1 - (emb @ q)[order], atol=1e-4)
    assert query.search(root, "captions", vector=q).num_rows == len(CAPTIONS)  # k defaults to 10, 6 rows exist


def test_filters_combine_with_searches(captions_root):
    root, emb = captions_root
    assert sorted(ids(query.search(root, skills=["grasp"]))) == [1, 2, 5]
    assert sorted(ids(query.search(root, skills=["press", "pick"]))) == [3, 4, 5]
    assert ids(query.search(root, text="drawer", where="level = 'task'")) == [2]
    assert sorted(ids(query.search(root, episode="ep-b"))) == [3, 4]
    # a prefiltered vector search: the nearest *task-level* caption to caption 3 is not caption 3
    hits = query.search(root, vector=emb[3], where="level = 'task'", limit=1)
    assert ids(hits) == [int(np.argmax(np.where([r[1] == "task" for r in CAPTIONS], emb @ emb[3], -9)))]
    assert ids(query.search(root, skills=["grasp"], text="cube")) == [5]
    assert query.search(root, where="end_frame >= 19", limit=2).num_rows == 2
    assert query.search(root, columns=["caption_id", "level"]).column_names == ["caption_id", "level"]


def test_time_travel_by_version_and_tag(captions_root):
    root, _ = captions_root
    extra = [("ep-d", "task", 0, 5, "open the drawer again", "second drawer", ["pull"])]
    write(root, "captions", captions_table(extra, first_id=100), tag="second")
    ensure_indexes(root)  # folds the new rows into every index
    assert sorted(ids(query.search(root, text="drawer"))) == [0, 1, 2, 100]
    assert sorted(ids(query.search(root, text="drawer", version="first"))) == [0, 1, 2]
    assert sorted(ids(query.search(root, text="drawer", version=1))) == [0, 1, 2]  # before any index: flat FTS
    assert ids(query.search(root, episode="ep-d", version="second")) == [100]


def test_errors_are_one_readable_line(captions_root, tmp_path):
    root, emb = captions_root
    cases = {
        "unknown table 'caption'": dict(table="caption"),
        "sql parser error": dict(where="level === 'x'"),
        "has no tag 'nope'": dict(version="nope"),
        "has no version 99": dict(version=99),
        "no column(s) colour": dict(columns=["colour"]),
        "not be combined": dict(text="drawer", vector=emb[0]),
    }
    for expected, kwargs in cases.items():
        with pytest.raises(query.QueryError, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
            query.search(root, **kwargs)
        assert "\n" not in str(info.value) and ".rs:" not in str(info.value)
    with pytest.raises(query.QueryError, match="does not exist"):
        query.search(str(tmp_path / "nowhere"), "episodes")
    with pytest.raises(query.QueryError, match="--text needs column 'instruction_1'"):
        write(root, "episodes", pa.Table.from_pylist([{"episode_id": "e", "status": "ok"}], schema=S.EPISODES))
        query.search(root, "episodes", text="drawer")


def test_sql_over_a_table(captions_root):
    root, _ = captions_root
    t = query.sql(root, "captions", "SELECT level, count(*) AS n FROM captions GROUP BY level ORDER BY level")
    assert t.to_pylist() == [{"level": "motion", "n": 3}, {"level": "task", "n": 3}]
    with pytest.raises(query.QueryError):
        query.sql(root, "captions", "SELECT nothing FROM captions")


@pytest.fixture(scope="module")
def real_root(sim_corpus, tmp_path_factory):
    return ingested_copy(sim_corpus, tmp_path_factory)


def test_queries_on_a_real_ingest(real_root):
    eps = query.search(real_root, "episodes", where="status = 'ok'", columns=["episode_id", "n_frames"])
    eid = eps["episode_id"][0].as_py()
    by_episode = query.search(real_root, "samples", episode=eid).sort_by("frame")
    expected = query.samples_of(real_root, eid)
    assert by_episode.num_rows == expected.num_rows > 0 and set(by_episode["episode_id"].to_pylist()) == {eid}
    for col in ("frame", "keypoints_uv", "track_id"):  # (future holds NaN, which never compares equal)
        assert by_episode[col].equals(expected[col])
    assert "ScalarIndexQuery" in open_table(real_root, "samples").scanner(filter=f"episode_id = '{eid}'").explain_plan()
    assert query.search(real_root, "samples", where="frame < 5", episode=eid, limit=3)["frame"].to_pylist() == [0, 1, 2]
    assert query.search(real_root, "tracks", episode=eid, version="ingest-1").num_rows == query.tracks_of(real_root, eid).num_rows
    frames = query.search(real_root, "frames", episode=eid)
    assert frames.column_names == ["episode_id", "frame"] and frames.num_rows == eps["n_frames"][0].as_py()


def test_captions_of_a_real_ingest_by_episode_text_and_time(real_root):
    eps = query.episodes(real_root, where="status = 'ok'", columns=["episode_id", "task"]).to_pylist()
    drawer = next(r["episode_id"] for r in eps if r["task"] == "drawer-open")
    rows = [(r["episode_id"], "task", 0, 44, f"do the {r['task']} task", r["task"], [r["task"]]) for r in eps]
    before = open_table(real_root, "captions").version if open_table(real_root, "captions") else None
    write(real_root, "captions", captions_table(rows, first_id=1000), tag="captioned")
    ensure_indexes(real_root)
    hits = query.search(real_root, "captions", text="drawer", episode=drawer, columns=["episode_id", "caption_id"])
    assert drawer in hits["episode_id"].to_pylist() and set(hits["episode_id"].to_pylist()) == {drawer}
    assert query.search(real_root, "captions", skills=["drawer-open"], version="captioned")["episode_id"].to_pylist() == [drawer]
    if before is not None:  # the caption stage already wrote some: they are still there at the older version
        assert query.search(real_root, "captions", version=before, where="caption_id >= 1000").num_rows == 0
    [cap] = [d for d in describe(real_root) if d["table"] == "captions"]
    kinds = {tuple(i["columns"]): i["type"] for i in cap["indexes"]}
    assert kinds[("instruction_1",)] == "Inverted" and kinds[("skill_labels",)] == "LabelList"
