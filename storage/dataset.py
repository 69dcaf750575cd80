"""A trace dataset is a root URI holding one Lance table per name: `<root>/<name>.lance`.

The root is a local directory today; anything Lance opens (`s3://...`, `gs://...`) works the same
way, so nothing here assumes a filesystem beyond a cheap existence check for local paths. A table
exists once its first commit lands: a directory holding only uncommitted fragments reads as absent.
"""

from __future__ import annotations

import os

import lance

from storage.schema import TABLES


def table_uri(root: str, name: str) -> str:
    """`<root>/<name>.lance`, keeping URI schemes intact."""
    return f"{str(root).rstrip('/')}/{name}.lance"


def open_table(root: str, name: str, version: int | str | None = None) -> lance.LanceDataset | None:
    """The table at `version` (number or tag), or None when it was never committed."""
    uri = table_uri(root, name)
    if "://" not in uri and not os.path.isdir(os.path.join(uri, "_versions")):
        return None
    try:
        return lance.dataset(uri, version=version)
    except (ValueError, OSError, FileNotFoundError):
        if version is not None:
            raise
        return None


def existing_episode_ids(root: str) -> set[str]:
    """Ids already committed (any status): a resumed ingest skips them, so nothing is written twice."""
    ds = open_table(root, "episodes")
    if ds is None:
        return set()
    return set(ds.to_table(columns=["episode_id"]).column("episode_id").to_pylist())


def index_summary(ds: lance.LanceDataset) -> list[dict]:
    """Per index: name, column(s), kind (BTree, Inverted, LabelList, IVF_PQ...), rows not yet covered."""
    out = []
    for d in ds.describe_indices():
        stats = ds.stats.index_stats(d.name)
        out.append(
            {
                "name": d.name,
                "columns": list(d.field_names),
                "type": str(stats.get("index_type", d.index_type)),
                "unindexed_rows": int(stats.get("num_unindexed_rows", 0)),
            }
        )
    return out


def describe(root: str) -> list[dict]:
    """Per table: rows, latest version, number of versions, tags (and the versions they name), indexes."""
    out = []
    for name in TABLES:
        ds = open_table(root, name)
        if ds is None:
            continue
        tags = ds.tags.list()
        out.append(
            {
                "table": name,
                "rows": ds.count_rows(),
                "version": ds.version,
                "versions": len(ds.versions()),
                "tags": sorted(tags),
                "tag_versions": {t: int(v["version"]) for t, v in sorted(tags.items())},
                "indexes": index_summary(ds),
            }
        )
    return out
