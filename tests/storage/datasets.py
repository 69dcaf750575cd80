"""Datasets for storage tests: synthetic captions, a real small ingest (made once per session), and
tools to corrupt a dataset on purpose. Shared by test_query, test_check, test_indexes, test_query_cli.
"""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa

from storage import schema as S
from storage.dataset import open_table, table_uri
from storage.writer import commit, ensure_indexes, write_uncommitted

# (episode, level, start, end, instruction_1, instruction_2, skills)
CAPTIONS = [
    ("ep-a", "motion", 0, 9, "reach toward the drawer handle", "move the gripper to the handle", ["reach"]),
    ("ep-a", "motion", 10, 19, "pull the drawer open", "drag the handle backwards", ["pull", "grasp"]),
    ("ep-a", "task", 0, 19, "open the drawer", "the robot opens a drawer", ["reach", "pull", "grasp"]),
    ("ep-b", "motion", 0, 14, "press the red button", "push the button down", ["press"]),
    ("ep-b", "task", 0, 14, "press the button", "the robot presses a button", ["press"]),
    ("ep-c", "task", 0, 29, "pick up the cube and place it", "move the block to the goal", ["pick", "place", "grasp"]),
]


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, S.EMBEDDING_DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def captions_table(rows=CAPTIONS, embeddings: np.ndarray | None = None, first_id: int = 0) -> pa.Table:
    emb = unit_vectors(len(rows)) if embeddings is None else np.asarray(embeddings, np.float32)
    return pa.Table.from_pylist(
        [
            {
                "episode_id": e, "caption_id": first_id + i, "level": lvl, "start_frame": a, "end_frame": b,
                "instruction_1": t1, "instruction_2": t2, "instruction_3": f"{t1}; {t2}", "skill_labels": sk,
                "embodiment": "robot", "embedding": emb[i].tolist(),
            }
            for i, (e, lvl, a, b, t1, t2, sk) in enumerate(rows)
        ],
        schema=S.CAPTIONS,
    )


def write(root: str, name: str, table: pa.Table, tag: str | None = None, schema: pa.Schema | None = None) -> int:
    schema = schema or table.schema
    return commit(root, name, write_uncommitted(root, name, table, schema), schema, tag=tag)


def ingest_small(sim_corpus, root: str, tag: str = "ingest-1"):
    """The ingest flow's work without Prefect/Ray (tasks.run.ingest), tagged `tag`."""
    from tasks.config import get_preset
    from tasks.run.ingest import ingest

    return ingest(str(sim_corpus), root, get_preset("sim"), tag=tag)


_INGESTED: dict[str, str] = {}


def ingested_copy(sim_corpus, tmp_path_factory) -> str:
    """A private copy of one real small ingest, made once per test session (extraction is the slow part)."""
    import shutil

    if str(sim_corpus) not in _INGESTED:
        root = str(tmp_path_factory.mktemp("ingested") / "traces")
        report = ingest_small(sim_corpus, root)
        assert report.ok >= 2, report.failures
        _INGESTED[str(sim_corpus)] = root
    copy = str(tmp_path_factory.mktemp("copy") / "traces")
    shutil.copytree(_INGESTED[str(sim_corpus)], copy)
    return copy


def overwrite(root: str, name: str, table: pa.Table) -> None:
    ds = open_table(root, name)
    lance.write_dataset(table, table_uri(root, name), schema=ds.schema, mode="overwrite")


def edit_leaf(col: pa.ChunkedArray, depth: int, edit) -> pa.Array:
    """Rebuild a nested list column after `edit(values)` changes its flattened leaf values in place."""
    arr = col.combine_chunks()
    levels = [arr]
    for _ in range(depth):
        levels.append(levels[-1].values)
    leaf = levels[-1].to_numpy(zero_copy_only=False).copy()
    edit(leaf)
    out = pa.array(leaf, levels[-1].type)
    for parent in reversed(levels[:-1]):
        if isinstance(parent, pa.FixedSizeListArray):
            out = pa.FixedSizeListArray.from_arrays(out, parent.type.list_size)
        else:
            out = pa.ListArray.from_arrays(parent.offsets, out)
    return out


def replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), table.schema.field(name), column)
