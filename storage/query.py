"""Read API over a trace dataset: SQL filters, full-text, vector and skill search, time travel.

Lance does the work (scalar/full-text/vector indexes from `storage.writer.ensure_indexes`); this
module turns the intent ("captions like this vector, about drawers, of episode X, as of tag T")
into one scan and turns Lance's errors into one readable line (`QueryError`). Embedding a sentence
is the caller's job: storage never imports models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import lance
import numpy as np
import pyarrow as pa
from lance.query import MultiMatchQuery

from storage.dataset import open_table, table_uri
from storage.schema import TABLES

TEXT_COLUMNS = ("instruction_1", "instruction_2", "instruction_3")
VECTOR_COLUMN = "embedding"
DEFAULT_K = 10
NPROBES = 20  # IVF partitions searched per query (of ~sqrt(rows)); see tests/bench/bench_query.py
REFINE_FACTOR = 10  # re-rank k * this PQ candidates exactly: PQ alone gave recall@10 0.82, this 1.0 (bench)


class QueryError(ValueError):
    """A query that cannot run: unknown table, bad SQL, unknown version or tag, missing dataset."""


def leaf_values(col: pa.ChunkedArray | pa.Array, *inner: int) -> np.ndarray:
    """A (nested) list column's leaf values as one numpy array, shaped (-1, *inner).

    Flattening through Arrow (slicing respected) avoids building Python lists per cell.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).reshape((-1, *inner))


def quote(value: str) -> str:
    """A string as an SQL literal for Lance filters."""
    return "'" + value.replace("'", "''") + "'"


def lance_message(exc: BaseException) -> str:
    """Lance's error text without the Rust source locations it appends."""
    text = re.sub(r",?\s*/\S+\.rs:\d+:\d+", "", str(exc))
    return " ".join(text.split())


def open_version(root: str, table: str, version: int | str | None = None) -> lance.LanceDataset:
    """The table as of `version` (number or tag; None = latest), or a QueryError saying what exists."""
    if table not in TABLES:
        raise QueryError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    try:
        ds = open_table(root, table, version=version)
    except (ValueError, OSError) as exc:
        latest = open_table(root, table)
        known = f"versions 1..{latest.version}, tags {sorted(latest.tags.list()) or 'none'}" if latest else "no versions"
        kind = "tag" if isinstance(version, str) else "version"
        raise QueryError(f"{table} has no {kind} {version!r} ({known})") from exc
    if ds is None:
        raise QueryError(f"{table_uri(root, table)} does not exist (nothing ingested into {root!r}?)")
    return ds


def readable_columns(ds: lance.LanceDataset) -> list[str]:
    """All columns except blobs (frames' JPEG/PNG bytes: read them with `frame_jpeg`)."""
    return [f.name for f in ds.schema if "blob" not in str(f.type) and b"lance-encoding:blob" not in (f.metadata or {})]


def search(
    root: str,
    table: str = "captions",
    *,
    where: str | None = None,
    text: str | None = None,
    vector: np.ndarray | list[float] | None = None,
    skills: list[str] | None = None,
    episode: str | None = None,
    version: int | str | None = None,
    limit: int | None = None,
    columns: list[str] | None = None,
    nprobes: int = NPROBES,
    refine_factor: int = REFINE_FACTOR,
) -> pa.Table:
    """Rows of `table` matching every given condition (AND), best first for text/vector search.

    where: a SQL predicate (`"level = 'task' AND end_frame > 30"`). text: full-text (BM25) over the
    caption text, adds `_score`. vector: (384,) query embedding, nearest by cosine, adds
    `_distance`; returns `limit` (default 10) rows. skills: captions carrying any of these labels.
    Filters are applied before the search (prefilter), so `limit` counts matching rows.
    """
    ds = open_version(root, table, version)
    names = set(ds.schema.names)
    preds = [f"({where})"] if where else []
    if episode is not None:
        preds.append(f"episode_id = {quote(episode)}")
    if skills:
        _need(names, "skill_labels", table, "--skill")
        preds.append(f"array_has_any(skill_labels, [{', '.join(quote(s) for s in skills)}])")
    if text is not None and vector is not None:
        raise QueryError("full-text and vector search cannot be combined in one query; pick one")
    cols = list(columns) if columns else readable_columns(ds)
    unknown = [c for c in cols if c not in names]
    if unknown:
        raise QueryError(f"{table} has no column(s) {', '.join(unknown)}; columns are {', '.join(ds.schema.names)}")
    kwargs: dict = {"filter": " AND ".join(preds) or None, "limit": limit}
    if text is not None:
        for c in TEXT_COLUMNS:
            _need(names, c, table, "--text")
        kwargs.update(full_text_query=MultiMatchQuery(text, list(TEXT_COLUMNS)), prefilter=True)
        cols.append("_score")
    if vector is not None:
        _need(names, VECTOR_COLUMN, table, "--like")
        q = np.asarray(vector, np.float32).reshape(-1)
        k = limit or DEFAULT_K
        kwargs.update(
            nearest={"column": VECTOR_COLUMN, "q": q, "k": k, "metric": "cosine", "nprobes": nprobes,
                     "refine_factor": refine_factor},
            prefilter=True,
            limit=k,
        )
        cols.append("_distance")
    try:
        return ds.to_table(columns=cols, **kwargs)
    except (ValueError, OSError, RuntimeError) as exc:
        raise QueryError(f"{table}: {lance_message(exc)}") from exc


def _need(names: set[str], column: str, table: str, what: str) -> None:
    if column not in names:
        raise QueryError(f"{what} needs column {column!r}, which {table} does not have (use the captions table)")


def sql(root: str, table: str, statement: str, version: int | str | None = None) -> pa.Table:
    """Any DataFusion SQL over one table, which the statement names by its table name."""
    ds = open_version(root, table, version)
    try:
        batches = ds.sql(statement).table_name(table).build().to_batch_records()
    except (ValueError, OSError, RuntimeError) as exc:
        raise QueryError(lance_message(exc)) from exc
    return pa.Table.from_batches(batches)


def episodes(root: str, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
    return _read(root, "episodes", where, columns)


def tracks_of(root: str, episode_id: str) -> pa.Table:
    return _read(root, "tracks", f"episode_id = {quote(episode_id)}").sort_by("track_id")


def samples_of(root: str, episode_id: str) -> pa.Table:
    return _read(root, "samples", f"episode_id = {quote(episode_id)}").sort_by("frame")


def _read(root: str, name: str, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
    ds = open_table(root, name)
    if ds is None:
        raise FileNotFoundError(f"{root} has no {name!r} table yet (nothing ingested?)")
    return ds.to_table(filter=where, columns=columns)


def frame_blobs(root: str, episode_id: str, frames: Sequence[int], column: str) -> list[bytes | None]:
    """Blob `column` ("jpeg" or "depth_png16") of stored frames `frames`, in that order (None where null).

    Blob columns are read lazily: one file slice per frame asked for.
    """
    ds = open_table(root, "frames")
    if ds is None:
        raise FileNotFoundError(f"{root} has no 'frames' table yet (nothing ingested?)")
    if not frames:
        return []
    span = f"frame BETWEEN {int(min(frames))} AND {int(max(frames))}"  # one frame: one row's metadata
    hit = ds.to_table(columns=["frame", column], filter=f"episode_id = {quote(episode_id)} AND {span}", with_row_id=True)
    rowid = dict(zip(hit["frame"].to_pylist(), hit["_rowid"].to_pylist()))
    missing = [f for f in frames if f not in rowid]
    if missing:
        raise KeyError(f"frames {missing[:5]} of episode {episode_id[:12]} are not stored")
    present = dict(zip(hit["frame"].to_pylist(), hit[column].is_valid().to_pylist()))
    want = [int(f) for f in frames if present[f]]
    blobs = dict(zip(want, (b.read() for b in ds.take_blobs(column, ids=[rowid[f] for f in want])))) if want else {}
    return [blobs.get(int(f)) for f in frames]


def frame_jpeg(root: str, episode_id: str, frame: int) -> bytes:
    """The stored JPEG of stored frame `frame`."""
    return frame_blobs(root, episode_id, [frame], "jpeg")[0]


def counts(root: str) -> dict[str, int]:
    """Rows per existing table."""
    return {name: ds.count_rows() for name in TABLES if (ds := open_table(root, name)) is not None}
