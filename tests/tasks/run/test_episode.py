"""The per-episode runner: the frames write on a side thread or inline gives the same rows."""

from __future__ import annotations

import pyarrow as pa

from storage.dataset import open_table
from storage.writer import commit_run
from tasks.config import get_preset, with_overrides
from tasks.run.discover import discover
from tasks.run.episode import process_episode


def test_side_thread_and_inline_frames_writes_store_the_same_rows(sim_corpus, tmp_path):
    cfg = with_overrides(get_preset("sim"), {"captions.backend": "off"})
    src = discover(str(sim_corpus), cfg)[0]
    tables = {}
    for overlap in (True, False):
        root = str(tmp_path / f"overlap-{overlap}")
        res = process_episode(src, cfg, root, overlap_writes=overlap)
        assert res.status == "ok" and res.n_frames > 0
        commit_run(root, {res.episode_id: res.fragments}, tag="one")
        tables[overlap] = {
            name: open_table(root, name).to_table().drop_columns(["ingested_at"] if name == "episodes" else [])
            for name in ("episodes", "tracks", "samples", "frames")
        }
    for name, table in tables[True].items():
        assert table.num_rows > 0, name
        assert same_bits(table, tables[False][name]), name


def same_bits(a: pa.Table, b: pa.Table) -> bool:
    """Equal types and buffers, column by column (unlike Table.equals, NaN equals NaN)."""
    if a.schema != b.schema:
        return False
    for x, y in zip(a.columns, b.columns):
        x, y = x.combine_chunks(), y.combine_chunks()
        for bx, by in zip(x.buffers(), y.buffers()):
            if (bx is None) != (by is None) or (bx is not None and not bx.equals(by)):
                return False
    return True
