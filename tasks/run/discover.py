"""Find episodes in a source (a directory, a glob, a manifest file, one video) and give each an id.

The id is the sha256 of the episode's bytes plus the extraction settings, so the same video
ingested with other settings is a new episode while a re-run finds what is already stored.
A LeRobot v3 dataset (a directory holding meta/info.json) stands for its episodes, one source each,
with ids from its metadata (tasks/run/lerobot_sources.py): hashing terabytes per run is not an option.
A symlink loop among the entries looked at (a -> b -> a, or a link to a directory above it) is
refused with its name: followed, it would hang a recursive glob or crash path resolution.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tasks.config import IngestConfig
from tasks.run.lerobot_sources import LeRobotSourceError, is_lerobot_root, lerobot_sources
from tasks.types import EpisodeSource

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
MANIFEST_SUFFIXES = {".txt", ".list", ".manifest", ".jsonl"}
_HASH_CHUNK = 4 << 20


class SourceError(ValueError):
    """The source names nothing ingestible; the message says what was looked at."""


def symlink_loop(path: Path) -> str | None:
    """How `path` loops, when it is a symlink that never reaches a file or points at a directory above it."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
        return f"{path} -> {os.readlink(path)} never reaches a file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path} -> {os.readlink(path)} never reaches a file"
        return None  # dangling: not a loop, and not an episode either
    parent = path.parent.resolve()
    if target.is_dir() and parent.is_relative_to(target):
        return f"{path} -> {os.readlink(path)} points back at {target}, a directory above it"
    return None


def _refuse_loop(path: Path) -> None:
    loop = symlink_loop(path)
    if loop:
        raise SourceError(f"symlink loop in the source: {loop}; remove the link or name the episodes directly")


def is_episode_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "video.mp4").exists() or (path / "frames").is_dir())


def _children(path: Path) -> list[Path]:
    """Entries of a directory, sorted; loops refused, an unreadable directory has none."""
    try:
        children = sorted(path.iterdir())
    except OSError:
        return []
    for child in children:
        _refuse_loop(child)
    return children


def _candidates(path: Path) -> list[Path]:
    if is_episode_dir(path) or is_lerobot_root(path):
        return [path]
    if path.is_dir():
        return [
            c for c in _children(path)
            if is_episode_dir(c) or is_lerobot_root(c) or (c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES)
        ]
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return [path]
    return []


def _magic(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def _refuse_loops_below(base: Path) -> None:
    """Walk `base` the way a recursive glob does (links followed, hidden directories skipped) and refuse
    a link that leads back to a directory already on the way down: glob would descend it forever."""

    def walk(d: Path, above: frozenset[Path]) -> None:
        for child in _children(d):
            if child.name.startswith(".") or not child.is_dir():
                continue
            real = child.resolve()
            if real in above:
                raise SourceError(f"symlink loop in the source: {child} leads back to {real}")
            walk(child, above | {real})

    walk(base, frozenset({base.resolve()}))


def glob_paths(pattern: str) -> list[Path]:
    """`glob.glob(pattern, recursive=True)`, sorted, with symlink loops refused instead of walked forever."""
    parts = Path(pattern).parts
    first = next((i for i, part in enumerate(parts) if _magic(part)), len(parts))
    if "**" in parts[first:]:
        base = Path(*parts[:first]) if first else Path(".")
        if base.is_dir():
            _refuse_loops_below(base)
    found = sorted({Path(p) for p in glob.glob(pattern, recursive=True)})
    for path in found:
        _refuse_loop(path)
    return found


@dataclass(frozen=True)
class ManifestEntry:
    """One episode a manifest names: where it is written (`line`, `text`) and the path it means."""

    line: int
    text: str
    path: Path


def manifest_entries(path: Path) -> list[ManifestEntry]:
    """One path per line (blank lines and # comments skipped) or JSON lines with a "uri" key.

    Relative entries are relative to the manifest's directory; an unreadable line names its number.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"manifest {path}: cannot read it as text ({exc})") from exc
    out = []
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = line
        if line.startswith("{"):
            try:
                entry = json.loads(line)["uri"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                why = "no \"uri\" key" if isinstance(exc, (KeyError, TypeError)) else f"invalid JSON ({exc})"
                raise SourceError(f"manifest {path} line {n}: {why}") from None
            if not isinstance(entry, str) or not entry:
                raise SourceError(f"manifest {path} line {n}: \"uri\" must be a path, got {entry!r}")
        p = Path(entry).expanduser()
        out.append(ManifestEntry(n, entry, p if p.is_absolute() else path.parent / p))
    return out


def is_manifest(source: str) -> bool:
    path = Path(source)
    return not _magic(source) and path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES


def resolve_paths(source: str) -> list[Path]:
    """Every episode path the source names, sorted, without duplicates."""
    path = Path(source)
    if _magic(source):
        found = [p for g in glob_paths(source) for p in _candidates(g)]
    elif is_manifest(source):
        found = []
        for entry in manifest_entries(path):
            _refuse_loop(entry.path)
            if not entry.path.exists():
                raise SourceError(f"manifest {path} line {entry.line} lists {entry.path}, which does not exist")
            found.extend(_candidates(entry.path))
    elif path.exists():
        found = _candidates(path)
    else:
        _refuse_loop(path)
        raise SourceError(f"source {source!r} does not exist (expected a directory, a glob, a manifest or a video)")
    unique = sorted({p.resolve() for p in found})
    if not unique:
        raise SourceError(
            f"no episodes in {source!r}: expected video files ({', '.join(sorted(VIDEO_SUFFIXES))}), "
            "episode directories holding video.mp4 or frames/, or LeRobot datasets holding meta/info.json"
        )
    return unique


def content_hash(path: Path, extra: str = "") -> str:
    """sha256 over a file, or over a directory's relative file names and bytes, plus `extra`."""
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)  # one reused buffer: no allocation per chunk
    view = memoryview(buf)
    files = [path]
    if path.is_dir():
        entries = sorted(path.rglob("*"))
        for p in entries:
            _refuse_loop(p)
        files = [p for p in entries if p.is_file()]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
    h.update(extra.encode())
    return h.hexdigest()


def discover(source: str, cfg: IngestConfig) -> list[EpisodeSource]:
    """EpisodeSource rows for everything in `source`, in path order (a LeRobot dataset's episodes by index)."""
    key = cfg.extraction_key()
    paths = resolve_paths(source)
    files = [p for p in paths if not is_lerobot_root(p)]
    # sha256 releases the GIL on large updates: hash several episodes at once (I/O and CPU bound).
    with ThreadPoolExecutor(max_workers=max(1, min(len(files), os.cpu_count() or 1, 8))) as pool:
        ids = dict(zip(files, pool.map(lambda p: content_hash(p, key), files)))
    out: list[EpisodeSource] = []
    for p in paths:
        if p in ids:
            kind = "dir" if p.is_dir() else "video"
            out.append(EpisodeSource(uri=str(p), episode_id=ids[p], corpus=cfg.corpus, preset=cfg.preset, kind=kind))
            continue
        try:
            out += lerobot_sources(p, cfg)
        except LeRobotSourceError as exc:
            raise SourceError(str(exc)) from None
    return out
