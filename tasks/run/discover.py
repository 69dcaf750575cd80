"""Find episodes in a source (a directory, a glob, a manifest file, one video) and give each an id.

The id is the sha256 of the episode's bytes plus the extraction settings, so the same video
ingested with other settings is a new episode while a re-run finds what is already stored.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.config import IngestConfig
from tasks.types import EpisodeSource

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
MANIFEST_SUFFIXES = {".txt", ".list", ".manifest", ".jsonl"}
_HASH_CHUNK = 4 << 20


class SourceError(ValueError):
    """The source names nothing ingestible; the message says what was looked at."""


def is_episode_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "video.mp4").exists() or (path / "frames").is_dir())


def _candidates(path: Path) -> list[Path]:
    if is_episode_dir(path):
        return [path]
    if path.is_dir():
        children = sorted(path.iterdir())
        return [c for c in children if is_episode_dir(c) or (c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES)]
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return [path]
    return []


def _read_manifest(path: Path) -> list[Path]:
    """One path per line (blank lines and # comments skipped) or JSON lines with a "uri" key."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = json.loads(line)["uri"] if line.startswith("{") else line
        p = Path(entry)
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def resolve_paths(source: str) -> list[Path]:
    """Every episode path the source names, sorted, without duplicates."""
    path = Path(source)
    if any(ch in source for ch in "*?["):
        found = [p for g in sorted(glob.glob(source, recursive=True)) for p in _candidates(Path(g))]
    elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        found = []
        for entry in _read_manifest(path):
            if not entry.exists():
                raise SourceError(f"manifest {path} lists {entry}, which does not exist")
            found.extend(_candidates(entry))
    elif path.exists():
        found = _candidates(path)
    else:
        raise SourceError(f"source {source!r} does not exist (expected a directory, a glob, a manifest or a video)")
    unique = sorted({p.resolve() for p in found})
    if not unique:
        raise SourceError(
            f"no episodes in {source!r}: expected video files ({', '.join(sorted(VIDEO_SUFFIXES))}) "
            "or episode directories holding video.mp4 or frames/"
        )
    return unique


def content_hash(path: Path, extra: str = "") -> str:
    """sha256 over a file, or over a directory's relative file names and bytes, plus `extra`."""
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)  # one reused buffer: no allocation per chunk
    view = memoryview(buf)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
    h.update(extra.encode())
    return h.hexdigest()


def discover(source: str, cfg: IngestConfig) -> list[EpisodeSource]:
    """EpisodeSource rows for everything in `source`."""
    key = cfg.extraction_key()
    paths = resolve_paths(source)
    # sha256 releases the GIL on large updates: hash several episodes at once (I/O and CPU bound).
    with ThreadPoolExecutor(max_workers=max(1, min(len(paths), os.cpu_count() or 1, 8))) as pool:
        ids = list(pool.map(lambda p: content_hash(p, key), paths))
    return [
        EpisodeSource(
            uri=str(p),
            episode_id=episode_id,
            corpus=cfg.corpus,
            preset=cfg.preset,
            kind="dir" if p.is_dir() else "video",
        )
        for p, episode_id in zip(paths, ids)
    ]
