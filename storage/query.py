"""Small read API over a trace dataset (the CLI and tests use it; Lance does the work)."""

from __future__ import annotations

import pyarrow as pa

from storage.dataset import open_table
from storage.schema import TABLES


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read(root: str, name: str, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
    ds = open_table(root, name)
    if ds is None:
        raise FileNotFoundError(f"{root} has no {name!r} table yet (nothing ingested?)")
    return ds.to_table(filter=where, columns=columns)


def episodes(root: str, where: str | None = None, columns: list[str] | None = None) -> pa.Table:
    return _read(root, "episodes", where, columns)


def tracks_of(root: str, episode_id: str) -> pa.Table:
    return _read(root, "tracks", f"episode_id = {_quote(episode_id)}").sort_by("track_id")


def samples_of(root: str, episode_id: str) -> pa.Table:
    return _read(root, "samples", f"episode_id = {_quote(episode_id)}").sort_by("frame")


def frame_jpeg(root: str, episode_id: str, frame: int) -> bytes:
    """The stored JPEG of stored frame `frame` (blob columns are read lazily, one file slice)."""
    ds = open_table(root, "frames")
    if ds is None:
        raise FileNotFoundError(f"{root} has no 'frames' table yet (nothing ingested?)")
    hit = ds.to_table(columns=["frame"], filter=f"episode_id = {_quote(episode_id)} AND frame = {int(frame)}", with_row_id=True)
    if hit.num_rows == 0:
        raise KeyError(f"no frame {frame} of episode {episode_id}")
    return ds.take_blobs("jpeg", ids=[hit["_rowid"][0].as_py()])[0].read()


def counts(root: str) -> dict[str, int]:
    """Rows per existing table."""
    return {name: ds.count_rows() for name in TABLES if (ds := open_table(root, name)) is not None}
