"""Source trees for the safety tests: an allowed root and a directory outside it, one episode in each."""

from __future__ import annotations

from pathlib import Path


def episode_dir(d: Path) -> Path:
    """A directory discovery counts as an episode (its video.mp4 is never decoded by these tests)."""
    d.mkdir(parents=True)
    (d / "video.mp4").write_bytes(b"\0" * 16)
    return d


def root_and_outside(tmp_path: Path) -> tuple[Path, Path]:
    root, other = tmp_path / "root", tmp_path / "other"
    episode_dir(root / "ep1")
    episode_dir(other / "secret")
    return root, other
