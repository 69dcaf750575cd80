"""Distributed writes with one commit: workers write fragments, the driver commits them once.

Workers call `write_uncommitted` (data files only, invisible to readers) and send the fragment
metadata back as JSON; the driver calls `commit` once per table per run. A crash before the
commit leaves only orphan files (removed by `cleanup_old_versions`), never half an ingest.
"""

from __future__ import annotations

import json
import time

import lance
import pyarrow as pa
from lance.fragment import FragmentMetadata

from storage.dataset import open_table, table_uri

COMMIT_ATTEMPTS = 5


def write_uncommitted(root: str, name: str, table: pa.Table, schema: pa.Schema) -> list[str]:
    """Write `table` as new fragment files of `<root>/<name>.lance`; returns their metadata as JSON.

    Works whether or not the table exists yet: fragments are plain files until a commit names them.
    """
    table = table.cast(schema) if table.schema != schema else table
    frags = lance.fragment.write_fragments(table, table_uri(root, name), schema=schema)
    return [json.dumps(f.to_json()) for f in frags]


def _tag(ds: lance.LanceDataset, tag: str, version: int) -> str:
    existing = ds.tags.list()
    name, i = tag, 1
    while name in existing:  # a re-used tag would silently move; keep each run's version findable
        i += 1
        name = f"{tag}-{i}"
    ds.tags.create(name, version)
    return name


def commit(root: str, name: str, fragments_json: list[str], schema: pa.Schema, tag: str | None = None) -> int | None:
    """Commit all fragments of a run in one version (create the table if needed); returns it."""
    if not fragments_json:
        return None
    frags = [FragmentMetadata.from_json(f) for f in fragments_json]
    uri = table_uri(root, name)
    for attempt in range(COMMIT_ATTEMPTS):
        ds = open_table(root, name)
        try:
            if ds is None:
                new = lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(schema, frags))
            else:
                new = lance.LanceDataset.commit(uri, lance.LanceOperation.Append(frags), read_version=ds.version)
            break
        except (OSError, ValueError):  # a concurrent writer won the race: read again and append
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    if tag:
        _tag(new, tag, new.version)
    return new.version


def ensure_indexes(root: str) -> None:
    """BTREE on `episode_id` in every table, rebuilt so rows appended since are covered."""
    for name in ("episodes", "tracks", "samples", "frames", "captions"):
        ds = open_table(root, name)
        if ds is not None and ds.count_rows():
            ds.create_scalar_index("episode_id", "BTREE", replace=True)
