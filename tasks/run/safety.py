"""Refuse sources outside the configured roots: no `../` escapes, no symlinks pointing elsewhere.

A deployment that anyone with UI access can trigger must not read arbitrary files on the worker.
Paths are compared after `Path.resolve()` (symlinks and `..` followed), and episode directories
are checked file by file, so a `video.mp4 -> /etc/shadow` link inside an allowed root is refused too.
Roots come from an explicit list or from `MU0_SOURCE_ROOTS` (os.pathsep-separated); none means
"unrestricted", which is the embedded default for a single user on a laptop (then a manifest may
name `../` paths too). A manifest is checked line by line before anything it names is looked at,
and a symlink loop is refused by name instead of crashing the resolution.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tasks.run.discover import SourceError, is_manifest, manifest_entries, resolve_paths, symlink_loop

ROOTS_ENV = "MU0_SOURCE_ROOTS"


class OutsideRootsError(SourceError):
    """A source resolves to a path outside every allowed root; the message names both."""


def roots_from_env(environ: dict[str, str] | None = None) -> list[Path]:
    """The roots configured in MU0_SOURCE_ROOTS; an empty list when it is unset or blank."""
    raw = (environ if environ is not None else os.environ).get(ROOTS_ENV, "")
    return [Path(r).expanduser() for r in raw.split(os.pathsep) if r.strip()]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


LOOP_MARK = " (symlink loop)"


def _real(path: Path) -> tuple[Path, bool]:
    """(where `path` leads, True) or, for a symlink loop, (its link text marked as a loop, False)."""
    if symlink_loop(path):
        return Path(f"{os.readlink(path)}{LOOP_MARK}"), False
    try:
        return path.resolve(), True
    except (RuntimeError, OSError):  # a loop further up the path
        return Path(f"{path}{LOOP_MARK}"), False


def outside_roots(paths: Iterable[str | Path], roots: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """(given path, where it really leads) for every path, or file inside a directory, outside `roots`.

    A symlink loop is listed too, its "real" path being the link text marked "(symlink loop)".
    """
    resolved_roots = [Path(r).expanduser().resolve() for r in roots]
    bad: list[tuple[Path, Path]] = []
    for given in paths:
        p = Path(given).expanduser()
        real, ok = _real(p)
        if not ok or not _inside(real, resolved_roots):
            bad.append((p, real))
            continue
        if real.is_dir():
            for f in sorted(p.rglob("*")):
                if not f.is_symlink():
                    continue
                target, ok = _real(f)
                if not ok or not _inside(target, resolved_roots):
                    bad.append((f, target))
    return bad


def check_within_roots(paths: Iterable[str | Path], roots: Iterable[str | Path]) -> list[Path]:
    """The resolved `paths` if every one lies inside one of `roots`; OutsideRootsError otherwise.

    An empty `roots` is refused too: callers that mean "unrestricted" skip the check instead.
    """
    roots = list(roots)
    if not roots:
        raise OutsideRootsError(f"no allowed source roots configured (set {ROOTS_ENV} or pass roots)")
    paths = list(paths)
    bad = outside_roots(paths, roots)
    if bad:
        loops = [(g, r) for g, r in bad if str(r).endswith(LOOP_MARK)]
        outside = [(g, r) for g, r in bad if not str(r).endswith(LOOP_MARK)]
        allowed = ", ".join(str(Path(r).expanduser().resolve()) for r in roots)
        why = []
        if outside:
            why.append(
                f"{len(outside)} source path(s) resolve outside the allowed roots [{allowed}]: {_listing(outside)}. "
                f"Move the data under a root or add its directory to {ROOTS_ENV}."
            )
        if loops:
            why.append(f"{len(loops)} symlink loop(s): {_listing(loops)}. Remove the looping links.")
        raise OutsideRootsError("refused: " + " ".join(why))
    return [Path(p).expanduser().resolve() for p in paths]


def _listing(pairs: list[tuple[Path, Path]]) -> str:
    more = f" (and {len(pairs) - 5} more)" if len(pairs) > 5 else ""
    return "; ".join(f"{g} -> {r}" if Path(g) != r else str(g) for g, r in pairs[:5]) + more


def check_source(source: str, roots: Iterable[str | Path] | None = None) -> list[Path]:
    """Resolve a source (directory, glob, manifest, video) and check every episode it names.

    `roots=None` reads MU0_SOURCE_ROOTS; when that is unset too, nothing is restricted.
    A manifest is checked entry by entry, so `../../elsewhere` lines are refused.
    """
    roots = roots_from_env() if roots is None else list(roots)
    if not roots:
        return resolve_paths(source)
    manifest = Path(source)
    extra = [manifest] if manifest.is_file() and not any(ch in source for ch in "*?[") else []
    check_within_roots(extra, roots)
    if is_manifest(source):
        check_manifest(manifest, roots)
    return check_within_roots(resolve_paths(source), roots)


def check_manifest(manifest: Path, roots: Iterable[str | Path]) -> None:
    """Refuse a manifest any line of which leads outside `roots` (`../` escapes, absolute paths, links).

    Checked before discovery looks at the entries, so the refusal names the line as written and
    says nothing about whether the path outside exists.
    """
    roots = list(roots)
    resolved_roots = [Path(r).expanduser().resolve() for r in roots]
    bad = []
    for entry in manifest_entries(manifest):
        real, ok = _real(entry.path)
        if not ok or not _inside(real, resolved_roots):
            bad.append(f"line {entry.line} {entry.text!r} -> {real}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        allowed = ", ".join(str(r) for r in resolved_roots)
        raise OutsideRootsError(
            f"refused: manifest {manifest} lists {len(bad)} path(s) outside the allowed roots [{allowed}]: "
            f"{'; '.join(bad[:5])}{more}. Move the data under a root or add its directory to {ROOTS_ENV}."
        )
