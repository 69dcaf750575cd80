"""The `inbox-ingest` flow: ingest whatever is new and finished in an inbox folder.

Meant to run on a schedule (see deploy/prefect.yaml) with a deployment concurrency limit of 1, so
two runs never race on one dataset. An entry (an episode directory or a video file) is taken when
it is *ready*:
  - a `.done` marker exists (`<entry>.done` beside it, or `<entry>/.done` inside a directory), or
  - unless `require_done_marker`, its size, file count and newest mtime are unchanged across two
    looks `settle_seconds` apart (so a copy still in progress is left for a later run).
Hidden entries and `*.part` / `*.tmp` / `*.partial` names are never taken. Ready entries go to
`ingest` as a manifest written under `<inbox>/.mu0-manifests/` (an audit trail of what each run
took); `ingest` skips episode ids already in the dataset, so each run adds only new episodes.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.run.report import IngestReport
from tasks.config import PRESETS, IngestConfig
from tasks.run.discover import VIDEO_SUFFIXES, is_episode_dir
from tasks.run.safety import OutsideRootsError, outside_roots

DONE_SUFFIX = ".done"
PARTIAL_SUFFIXES = {".part", ".tmp", ".partial", ".crdownload"}
MANIFEST_DIR = ".mu0-manifests"


def _snapshot(path: Path) -> tuple[int, int, int]:
    """(total bytes, file count, newest mtime in ns) of a file or of everything under a directory."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    stats = [f.stat() for f in files if f.exists()]
    return sum(s.st_size for s in stats), len(stats), max((s.st_mtime_ns for s in stats), default=0)


def _has_marker(path: Path) -> bool:
    return path.with_name(path.name + DONE_SUFFIX).exists() or (path.is_dir() and (path / DONE_SUFFIX).exists())


def candidates(inbox: Path) -> list[Path]:
    """Entries that could be episodes: episode directories and video files, no hidden or partial names."""
    out = []
    for p in sorted(inbox.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() in PARTIAL_SUFFIXES or p.name.endswith(DONE_SUFFIX):
            continue
        if is_episode_dir(p) or (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
            out.append(p)
    return out


def ready_entries(inbox: str | Path, settle_seconds: float = 5.0, require_done_marker: bool = False) -> list[Path]:
    """Entries of `inbox` that are finished (marker, or unchanged across two looks), sorted."""
    root = Path(inbox)
    if not root.is_dir():
        raise FileNotFoundError(f"inbox {root} is not a directory")
    marked, unmarked = [], []
    for p in candidates(root):
        (marked if _has_marker(p) else unmarked).append(p)
    if require_done_marker or not unmarked:
        return marked
    first = {p: _snapshot(p) for p in unmarked}
    time.sleep(settle_seconds)
    stable = [p for p in unmarked if p.exists() and first[p][1] > 0 and _snapshot(p) == first[p]]
    return sorted(marked + [p for p in stable if is_episode_dir(p) or p.is_file()])


@task(name="list-ready", cache_policy=NO_CACHE)
def list_ready(inbox: str, settle_seconds: float, require_done_marker: bool) -> list[str]:
    return [str(p) for p in ready_entries(inbox, settle_seconds, require_done_marker)]


def write_manifest(inbox: Path, entries: list[str]) -> Path:
    out = inbox / MANIFEST_DIR
    out.mkdir(exist_ok=True)
    run = flow_run.id or uuid.uuid4()
    path = out / f"{time.strftime('%Y%m%dT%H%M%S')}-{run}.txt"
    path.write_text("".join(f"{e}\n" for e in entries))
    return path


@flow(name="inbox-ingest", log_prints=True)
def inbox_ingest(
    inbox: str,
    dataset: str = "data/traces",
    config: IngestConfig = PRESETS["generic"],
    runner: Literal["ray", "sequential"] = "ray",
    ray_address: str | None = None,
    num_cpus: int | None = None,
    settle_seconds: float = 5.0,
    require_done_marker: bool = False,
    allowed_roots: list[str] | None = None,
) -> IngestReport:
    """Ingest every finished, not yet ingested episode in an inbox folder into a Lance dataset.

    Args:
        inbox: folder that keeps receiving episode directories or video files
        dataset: Lance dataset root the episodes are added to
        config: extraction settings (the preset's defaults; part of each episode id)
        runner: "ray" for the Ray runner, "sequential" to run in the flow's own process
        ray_address: an existing Ray cluster ("auto" inside one); empty starts a local Ray
        num_cpus: CPUs for a local Ray
        settle_seconds: an entry without a .done marker is taken when unchanged for this long
        require_done_marker: take only entries with a .done marker (for writers that can make one)
        allowed_roots: entries must resolve inside these folders; empty means the inbox itself
    """
    log = get_run_logger()
    root = Path(inbox).expanduser().resolve()
    ready = list_ready(str(root), settle_seconds, require_done_marker)
    roots = allowed_roots or [root]
    bad = {e: b for e in ready if (b := outside_roots([e], roots))}
    ready = [e for e in ready if e not in bad]
    log.info("%d ready entries in %s", len(ready), root)
    if ready:
        from flows.ingest import ingest  # here: an idle inbox run does not load the extraction stack

        manifest = write_manifest(root, ready)
        report = ingest(
            source=str(manifest), dataset=dataset, config=config, runner=runner,
            ray_address=ray_address, num_cpus=num_cpus,
        )
    else:
        report = IngestReport(run_tag="", dataset=dataset, discovered=0, skipped=0)
    log.info("inbox run: %d new ok, %d failed, %d rejected, %d already ingested",
             report.ok, report.failed, report.rejected, report.skipped)
    if bad:
        listing = "; ".join(f"{g} -> {r}" for b in bad.values() for g, r in b)
        raise OutsideRootsError(
            f"refused {len(bad)} inbox entries that resolve outside {[str(r) for r in roots]}: {listing}. "
            "Remove the links or add their targets to allowed_roots."
        )
    return report
