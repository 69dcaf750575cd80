"""Distributed writes with one commit: workers write fragments, the driver commits them once.

Workers call `write_uncommitted` (data files only, invisible to readers) and send the fragment
metadata back as JSON strings (small, picklable, language-neutral); the driver calls `commit_run`
once per run: one version per table, `episodes` last, idempotent by episode id, under the dataset
lock and with a manifest that the next run completes if this one dies half-way (storage/runs.py).
A crash before the commit leaves only orphan data files, never half an ingest.

Measured with pylance 14.0.2 (local disk, 2 cores): a BTREE on a 64-char `episode_id` takes 7 ms
for 1e4 rows, 16 ms for 1e5 and 0.16 s for 1e6; folding 1k appended rows into it with
`optimize_indices` takes 0.08 s at 1e6 rows. Unindexed rows are still found (Lance scans them
next to the index), so the refresh is for speed only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path

import lance
import pyarrow as pa
from lance.fragment import FragmentMetadata

from storage.dataset import open_table, table_uri
from storage.faults import fault_point
from storage.runs import RunManifest, dataset_lock, runs_alive, stale_data_files
from storage.schema import FUTURE_LEN, HISTORY_LEN, TABLES, table_schemas

COMMIT_ATTEMPTS = 5
INDEXED_COLUMN = "episode_id"


def write_uncommitted(root: str, name: str, table: pa.Table, schema: pa.Schema) -> list[str]:
    """Write `table` as new fragment files of `<root>/<name>.lance`; returns their metadata as JSON.

    Works whether or not the table exists yet: fragments are plain files under `data/` until a
    commit names them (Lance logs "No existing dataset ... will be created"; `storage/__init__`
    silences that). Fragment ids in the metadata are provisional; the commit renumbers them.
    """
    table = table.cast(schema) if table.schema != schema else table
    frags = lance.fragment.write_fragments(table, table_uri(root, name), schema=schema)
    return [json.dumps(f.to_json()) for f in frags]


def _commit_once(uri: str, ds: lance.LanceDataset | None, schema: pa.Schema, frags: list[FragmentMetadata]):
    if ds is None:
        # max_retries=0: if another driver created the table since we looked, Lance must fail
        # (we then re-read and append) instead of rebasing our Overwrite on top and erasing its rows.
        return lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(schema, frags), max_retries=0)
    # Append vs concurrent Append is resolved inside Lance; an incompatible concurrent commit
    # (an Overwrite) raises CommitConflictError and we read again.
    return lance.LanceDataset.commit(uri, lance.LanceOperation.Append(frags), read_version=ds.version)


def _tag(ds: lance.LanceDataset, tag: str, version: int) -> str:
    """Tag `version`; a taken name gets a suffix (a moved tag would lose the older run's version)."""
    for i in range(1, 100):
        name = tag if i == 1 else f"{tag}-{i}"
        if name in ds.tags.list():
            continue
        try:
            ds.tags.create(name, version)
            return name
        except (OSError, ValueError):  # created by a concurrent driver between list and create
            continue
    raise RuntimeError(f"could not find a free tag name for {tag!r}")


def commit(root: str, name: str, fragments_json: list[str], schema: pa.Schema, tag: str | None = None) -> int | None:
    """Commit all fragments of a run in one version (creating the table if needed); returns it.

    No fragments means no commit (None). Retries when a concurrent commit makes ours stale.
    """
    if not fragments_json:
        return None
    frags = [FragmentMetadata.from_json(f) for f in fragments_json]
    uri = table_uri(root, name)
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            new = _commit_once(uri, open_table(root, name), schema, frags)
            break
        except OSError:  # CommitConflictError, or lost the race to create the table
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    if tag:
        _tag(new, tag, new.version)
    return new.version


# Tables are committed in this order: `episodes` last, so an episode counts as ingested (resume reads
# `episodes`) only once every other table holds its rows.
COMMIT_ORDER = tuple(n for n in TABLES if n != "episodes") + ("episodes",)


def _ids_present(root: str, name: str, ids: list[str]) -> set[str]:
    """Which of `ids` the table's latest version already holds (BTREE-indexed lookup)."""
    ds = open_table(root, name)
    if ds is None or not ids:
        return set()
    found: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = ", ".join("'" + e.replace("'", "''") + "'" for e in ids[i : i + 500])
        col = ds.to_table(columns=[INDEXED_COLUMN], filter=f"{INDEXED_COLUMN} IN ({chunk})").column(INDEXED_COLUMN)
        found.update(col.to_pylist())
    return found


def _commit_manifest(root: str, manifest: RunManifest) -> dict[str, int]:
    """Commit what `manifest` holds that the tables do not hold yet; call with the dataset lock held."""
    schemas = table_schemas(manifest.future_len, manifest.history_len)
    versions = {}
    for name in COMMIT_ORDER:
        per_episode = {e: f[name] for e, f in manifest.fragments.items() if f.get(name)}
        have = _ids_present(root, name, sorted(per_episode))
        frags = [f for e, fs in per_episode.items() if e not in have for f in fs]
        version = commit(root, name, frags, schemas[name], tag=manifest.tag)
        if version is not None:
            versions[name] = version
        fault_point(f"committed:{name}")
    return versions


def commit_run(
    root: str, fragments: Mapping[str, Mapping[str, list[str]]], tag: str,
    future_len: int = FUTURE_LEN, history_len: int = HISTORY_LEN,
) -> dict[str, int]:
    """Commit one run's fragments (episode id -> table -> fragment JSON), atomically per episode.

    Under the dataset lock: the run's manifest is written first, then each table gets one version
    (tagged `tag`) holding the episodes it does not hold yet, `episodes` last, then the manifest goes.
    A crash anywhere leaves the manifest, and the next run (or `mu0 check --repair`) completes it;
    concurrent runs of one corpus add each episode once. `future_len`/`history_len` fix the samples
    table's schema (storage.schema.table_schemas). Returns the new version per table.
    """
    frags = {e: dict(f) for e, f in fragments.items()}
    manifest = RunManifest(tag=tag, fragments=frags, future_len=future_len, history_len=history_len)
    with dataset_lock(root):
        repair_locked(root)
        manifest.save(root)
        versions = _commit_manifest(root, manifest)
        manifest.remove(root)
    return versions


def repair_locked(root: str) -> list[str]:
    """Complete every run a crash left half-committed (its manifest still there); returns their tags."""
    done = []
    for manifest in RunManifest.pending(root):
        _commit_manifest(root, manifest)
        manifest.remove(root)
        done.append(manifest.tag)
    return done


def repair(root: str) -> list[str]:
    """`repair_locked` under the dataset lock (waits for a run that is committing right now), then the
    indexes the dead runs never built; returns the tags of the runs completed."""
    with dataset_lock(root):
        done = repair_locked(root)
    if done:
        ensure_indexes(root)
    return done


def remove_stale_data_files(root: str) -> list[Path]:
    """Delete the data files killed runs left uncommitted (storage.runs.stale_data_files), unless a run
    is working on the dataset now: its own uncommitted files may be that old. Returns what was deleted."""
    with dataset_lock(root):
        if runs_alive(root):
            return []
        stale = stale_data_files(root)
        for path in stale:
            path.unlink(missing_ok=True)
    return stale


# Indexes per table (docs/architecture.md#indexes): (column, kind). Every table gets a BTREE on
# `episode_id`; captions add full-text (INVERTED) on the caption text, LABEL_LIST on `skill_labels`
# and a vector index.
SCALAR_INDEXES: dict[str, tuple[tuple[str, str], ...]] = {
    name: ((INDEXED_COLUMN, "BTREE"),) for name in TABLES
}
SCALAR_INDEXES["captions"] = (
    (INDEXED_COLUMN, "BTREE"),
    ("instruction_1", "INVERTED"),
    ("instruction_2", "INVERTED"),
    ("instruction_3", "INVERTED"),
    ("skill_labels", "LABEL_LIST"),
)
VECTOR_COLUMN = "embedding"
# Below this many captions an exact (flat) cosine scan is a few milliseconds and gives perfect
# recall, and IVF_PQ cannot be trained sensibly (PQ wants >= 256 rows per codebook): no index.
VECTOR_INDEX_MIN_ROWS = 5000
VECTOR_INDEX_TYPE = "IVF_PQ"
VECTOR_SUB_VECTORS = 48  # 384-d / 48 = 8 dims per PQ code: recall@10 ~0.9+ with a refine step


def vector_partitions(rows: int) -> int:
    """IVF partitions ~ sqrt(rows), at most 1024, and at least 256 rows each (what k-means needs;
    Lance lowers the count to that itself, so asking for it keeps the request honest)."""
    return int(max(1, min(1024, round(rows**0.5), rows // 256)))


def _index_state(ds: lance.LanceDataset) -> dict[str, tuple[str, int]]:
    """Indexed column -> (index name, rows not yet covered by it)."""
    out = {}
    for d in ds.describe_indices():
        if len(d.field_names) == 1:
            out[d.field_names[0]] = (d.name, int(ds.stats.index_stats(d.name)["num_unindexed_rows"]))
    return out


def _create_vector_index(ds: lance.LanceDataset) -> None:
    rows = ds.count_rows()
    ds.create_index(
        VECTOR_COLUMN,
        VECTOR_INDEX_TYPE,
        metric="cosine",  # embeddings are L2-normalised: cosine ranks like the dot product
        num_partitions=vector_partitions(rows),
        num_sub_vectors=VECTOR_SUB_VECTORS,
    )


def ensure_indexes(root: str) -> dict[str, str]:
    """Every index of docs/architecture.md#indexes present and covering all rows; returns what was done per table.

    Missing indexes are built ("created"); indexes with rows appended since are brought up to date
    with `optimize_indices` ("updated": incremental, new rows go to the existing partitions /
    posting lists, about half the cost of a rebuild); up-to-date tables get no new version
    ("current"). The captions vector index appears once the table reaches VECTOR_INDEX_MIN_ROWS;
    below that vector search is an exact flat scan.
    """
    done: dict[str, str] = {}
    for name in TABLES:
        ds = open_table(root, name)
        if ds is None or not ds.count_rows():
            continue
        state = _index_state(ds)
        created = False
        for column, kind in SCALAR_INDEXES[name]:
            if column not in state:
                ds.create_scalar_index(column, kind)
                created = True
        if name == "captions" and VECTOR_COLUMN not in state and ds.count_rows() >= VECTOR_INDEX_MIN_ROWS:
            _create_vector_index(ds)
            created = True
        stale = [idx for idx, unindexed in state.values() if unindexed]
        if stale:
            ds.optimize.optimize_indices(index_names=stale)
        done[name] = "created" if created else "updated" if stale else "current"
    return done
