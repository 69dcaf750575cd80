"""A run's commit bookkeeping: the dataset lock and the manifest of a run being committed.

Commits of one dataset are serialised by an advisory lock (`flock` on `<root>/_runs/.lock`): the
kernel drops it when its holder dies, however it dies, so a killed run never blocks the next. The
manifest (`<root>/_runs/<tag>.json`) lists every fragment the run is about to commit; it is written
before the first table commit and removed after the last, so a manifest still on disk means a run
died half-committed, and whoever takes the lock next completes it (docs/architecture.md#commit-protocol).
Local directories only: for object-store roots both are skipped (Lance's own commit conflicts remain).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lance

from storage.dataset import open_table, table_uri
from storage.schema import TABLES

RUNS_DIR = "_runs"


def _local(root: str) -> Path | None:
    return None if "://" in str(root) else Path(root)


@contextlib.contextmanager
def dataset_lock(root: str, timeout_s: float = 3600.0) -> Iterator[None]:
    """Hold the dataset's commit lock (waits for a run that is committing; gives up after `timeout_s`)."""
    base = _local(root)
    if base is None:
        yield
        return
    (base / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    with open(base / RUNS_DIR / ".lock", "a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{root}: another run held the commit lock for {timeout_s:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class RunManifest:
    """What one run commits: episode id -> table -> fragment metadata (JSON strings), and its tag."""

    tag: str
    fragments: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    future_len: int = 0  # the samples table's trace lengths (its schema depends on them)
    history_len: int = 0

    def path(self, root: str) -> Path | None:
        base = _local(root)
        return None if base is None else base / RUNS_DIR / f"{self.tag}.json"

    def save(self, root: str) -> None:
        """Write atomically (temp file + rename): a half-written manifest would be worse than none."""
        path = self.path(root)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        with open(tmp) as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def remove(self, root: str) -> None:
        path = self.path(root)
        if path is not None:
            path.unlink(missing_ok=True)

    @classmethod
    def pending(cls, root: str) -> list["RunManifest"]:
        """Manifests left by runs that died half-committed, oldest first."""
        base = _local(root)
        if base is None or not (base / RUNS_DIR).is_dir():
            return []
        files = sorted((base / RUNS_DIR).glob("*.json"), key=lambda p: p.stat().st_mtime)
        return [cls(**json.loads(p.read_text())) for p in files]


@contextlib.contextmanager
def run_lease(root: str, run_id: str) -> Iterator[None]:
    """Held for a run's whole life (`<root>/_runs/<run_id>.lease`, exclusively locked); the kernel drops
    the lock when the process dies, however it dies, so `dead_leases` can tell a killed run from a live one.

    The file is locked before it gets its name, so no one ever sees it unlocked while the run lives.
    """
    base = _local(root)
    if base is None:
        yield
        return
    (base / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    path = base / RUNS_DIR / f"{run_id}.lease"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(str(os.getpid()))
        fh.flush()
        os.replace(tmp, path)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lease_free(path: Path) -> bool | None:
    """True when nobody holds the lease at `path` (its run died), False when one does, None when it is gone."""
    try:
        fh = open(path)
    except FileNotFoundError:  # its run just ended
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def runs_alive(root: str) -> bool:
    """Whether some run is working on the dataset now (holds its lease)."""
    base = _local(root)
    leases = sorted((base / RUNS_DIR).glob("*.lease")) if base is not None and (base / RUNS_DIR).is_dir() else []
    return any(_lease_free(p) is False for p in leases)


def dead_leases(root: str) -> list[str]:
    """Run ids whose lease nobody holds any more: their process died without ending the run. Each is
    removed as it is found, so one caller reports it."""
    base = _local(root)
    if base is None or not (base / RUNS_DIR).is_dir():
        return []
    dead = []
    for path in sorted((base / RUNS_DIR).glob("*.lease")):
        if _lease_free(path):
            path.unlink(missing_ok=True)
            dead.append(path.stem)
    return dead


STALE_FRAGMENT_S = 3600.0  # an uncommitted data file older than this belongs to no run still going


def stale_data_files(root: str, grace_s: float = STALE_FRAGMENT_S) -> list[Path]:
    """Data files no version of any table references, older than `grace_s`: rows a killed run wrote
    and never committed. Younger ones may belong to a run still extracting. Local roots only."""
    base = _local(root)
    if base is None:
        return []
    now, stale = time.time(), []
    for name in TABLES:
        data = Path(table_uri(root, name)) / "data"
        if not data.is_dir():
            continue
        referenced: set[str] = set()
        ds = open_table(root, name)
        for v in ds.versions() if ds is not None else []:
            for frag in lance.dataset(ds.uri, version=v["version"]).get_fragments():
                referenced.update(Path(f.path).name for f in frag.data_files())
        stale += [f for f in sorted(data.iterdir()) if f.name not in referenced and now - f.stat().st_mtime > grace_s]
    return stale
