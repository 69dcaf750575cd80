"""ensure_indexes: every index of docs/architecture.md#indexes is built once, kept covering appended rows,
and used."""

from __future__ import annotations

import pytest

import storage.writer as W
from storage import query
from storage.dataset import describe, open_table
from storage.writer import ensure_indexes, vector_partitions
from tests.storage.datasets import CAPTIONS, captions_table, unit_vectors, write


def kinds(root: str, table: str = "captions") -> dict[str, tuple[str, int]]:
    [d] = [d for d in describe(root) if d["table"] == table]
    return {i["columns"][0]: (i["type"], i["unindexed_rows"]) for i in d["indexes"]}


def test_captions_get_scalar_indexes_and_no_vector_index_while_small(tmp_path):
    root = str(tmp_path)
    write(root, "captions", captions_table())
    assert ensure_indexes(root) == {"captions": "created"}
    assert kinds(root) == {
        "episode_id": ("BTree", 0),
        "instruction_1": ("Inverted", 0),
        "instruction_2": ("Inverted", 0),
        "instruction_3": ("Inverted", 0),
        "skill_labels": ("LabelList", 0),
    }
    ds = open_table(root, "captions")
    plan = ds.scanner(filter="array_has_any(skill_labels, ['grasp'])").explain_plan()
    assert "ScalarIndexQuery" in plan and "skill_labels_idx" in plan
    assert ensure_indexes(root) == {"captions": "current"} and open_table(root, "captions").version == ds.version


def test_appended_rows_are_folded_into_every_index(tmp_path):
    root = str(tmp_path)
    write(root, "captions", captions_table())
    ensure_indexes(root)
    write(root, "captions", captions_table([("ep-z", "task", 0, 3, "wipe the table", "clean", ["wipe"])], first_id=50))
    assert all(unindexed == 1 for _, unindexed in kinds(root).values())
    assert ensure_indexes(root) == {"captions": "updated"}
    assert all(unindexed == 0 for _, unindexed in kinds(root).values())
    assert query.search(root, text="wipe")["caption_id"].to_pylist() == [50]
    assert query.search(root, skills=["wipe"])["caption_id"].to_pylist() == [50]


def test_vector_index_appears_at_the_threshold_and_stays_current(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "VECTOR_INDEX_MIN_ROWS", 600)
    monkeypatch.setattr(W, "VECTOR_SUB_VECTORS", 16)  # quick to train on a few hundred rows
    root = str(tmp_path)
    rows = CAPTIONS * 50  # 300 rows: below the threshold
    emb = unit_vectors(2 * len(rows), seed=1)
    write(root, "captions", captions_table(rows, emb[: len(rows)]))
    ensure_indexes(root)
    assert "embedding" not in kinds(root)
    write(root, "captions", captions_table(rows, emb[len(rows):], first_id=len(rows)))
    assert ensure_indexes(root) == {"captions": "created"}
    assert kinds(root)["embedding"] == ("IVF_PQ", 0)
    [vec] = [i for i in open_table(root, "captions").describe_indices() if i.name == "embedding_idx"]
    stats = open_table(root, "captions").stats.index_stats(vec.name)
    assert stats["indices"][0]["metric_type"] == "cosine"
    assert stats["indices"][0]["num_partitions"] == vector_partitions(2 * len(rows)) == 2  # 600 rows // 256
    # searched through the index, still finds a stored vector as its own nearest neighbour
    hits = query.search(root, vector=emb[123], limit=5, nprobes=2)
    assert hits["caption_id"][0].as_py() == 123 and hits["_distance"][0].as_py() < 0.05
    assert "ANNIvfPartition" in open_table(root, "captions").scanner(
        nearest={"column": "embedding", "q": emb[0], "k": 5}).explain_plan()
    write(root, "captions", captions_table(CAPTIONS, unit_vectors(6, seed=9), first_id=9000))
    assert ensure_indexes(root) == {"captions": "updated"} and kinds(root)["embedding"] == ("IVF_PQ", 0)


@pytest.mark.parametrize("rows, parts", [(100, 1), (5000, 19), (10_000, 39), (100_000, 316), (10_000_000, 1024)])
def test_partitions_grow_with_sqrt_rows(rows, parts):
    assert vector_partitions(rows) == parts
