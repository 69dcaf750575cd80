"""Hostile sources (issue 13): manifests that escape the allowed roots, symlink loops, broken manifests.

Each is refused with a message that names the manifest line or the link, before any episode is read,
and a symlink loop never hangs a recursive glob nor crashes path resolution.
"""

from __future__ import annotations

import json
import re

import pytest

from tasks.config import get_preset
from tasks.run.discover import SourceError, discover, resolve_paths
from tasks.run.safety import ROOTS_ENV, OutsideRootsError, check_source, outside_roots
from tests.tasks.run.source_tree import episode_dir, root_and_outside

SIM = get_preset("sim")


@pytest.fixture
def tree(tmp_path):
    return root_and_outside(tmp_path)


def test_manifest_escaping_the_roots_is_refused_naming_the_line(tree, monkeypatch):
    root, other = tree
    manifest = root / "list.txt"
    manifest.write_text(f"ep1\n../other/secret\n{other / 'secret'}\n../other/nothing-here\n")
    monkeypatch.setenv(ROOTS_ENV, str(root))
    with pytest.raises(OutsideRootsError) as err:
        check_source(str(manifest))
    msg = str(err.value)
    assert re.search(rf"manifest {re.escape(str(manifest))} lists 3 path\(s\) outside the allowed roots", msg), msg
    assert f"line 2 '../other/secret' -> {other / 'secret'}" in msg
    assert f"line 3 '{other / 'secret'}'" in msg
    assert "line 4 '../other/nothing-here'" in msg and "does not exist" not in msg  # nothing said about outside
    assert ROOTS_ENV in msg


def test_manifest_inside_the_roots_passes_even_through_dotdot(tree):
    root, _ = tree
    episode_dir(root / "ep2")
    manifest = root / "sub" / "list.txt"
    manifest.parent.mkdir()
    manifest.write_text("../ep1\n../ep2\n")
    assert check_source(str(manifest), [root]) == [(root / "ep1").resolve(), (root / "ep2").resolve()]


def test_broken_manifest_lines_are_named(tmp_path):
    episode_dir(tmp_path / "ep1")
    manifest = tmp_path / "list.jsonl"
    for text, cause in [
        ('{"uri": "ep1"}\n{"uri": "ep1"\n', r"list\.jsonl line 2: invalid JSON"),
        ('{"path": "ep1"}\n', r"list\.jsonl line 1: no \"uri\" key"),
        ('{"uri": 3}\n', r"list\.jsonl line 1: \"uri\" must be a path, got 3"),
    ]:
        manifest.write_text(text)
        with pytest.raises(SourceError, match=cause):
            discover(str(manifest), SIM)
    manifest.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SourceError, match=r"list\.jsonl: cannot read it as text"):
        discover(str(manifest), SIM)
    manifest.write_text(json.dumps({"uri": "ep1"}) + "\n")
    assert [s.uri for s in discover(str(manifest), SIM)] == [str((tmp_path / "ep1").resolve())]


def test_a_symlink_loop_in_a_source_directory_is_refused(tmp_path):
    src = tmp_path / "src"
    episode_dir(src / "ep1")
    (src / "a.mp4").symlink_to("b.mp4")
    (src / "b.mp4").symlink_to("a.mp4")
    with pytest.raises(SourceError, match=r"symlink loop in the source: .*src/a\.mp4 -> b\.mp4 never reaches a file"):
        discover(str(src), SIM)


@pytest.mark.timeout(30)
def test_a_link_back_up_the_tree_does_not_hang_a_recursive_glob(tmp_path):
    src = tmp_path / "src"
    episode_dir(src / "day1" / "ep1")
    (src / "day1" / "again").symlink_to("..")
    with pytest.raises(SourceError, match=r"day1/again -> \.\. points back at .*/src, a directory above it"):
        discover(str(src / "**" / "ep*"), SIM)
    (src / "day1" / "again").unlink()
    assert [s.uri.rsplit("/", 1)[-1] for s in discover(str(src / "**" / "ep*"), SIM)] == ["ep1"]


def test_a_symlink_loop_inside_an_episode_is_refused_not_a_crash(tree):
    root, _ = tree
    (root / "ep1" / "x").symlink_to("y")
    (root / "ep1" / "y").symlink_to("x")
    with pytest.raises(SourceError, match=r"symlink loop in the source: .*ep1/x -> y never reaches a file"):
        discover(str(root / "ep1"), SIM)
    with pytest.raises(OutsideRootsError, match=r"refused: 2 symlink loop\(s\): .*ep1/x -> y \(symlink loop\)"):
        check_source(str(root / "ep1"), [root])
    bad = dict(outside_roots([root / "ep1"], [root]))  # what the inbox uses: the entry is listed, nothing raises
    assert set(bad) == {root / "ep1" / "x", root / "ep1" / "y"}


def test_a_source_that_is_itself_a_loop_says_so(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(SourceError, match=r"a -> b never reaches a file"):
        resolve_paths(str(tmp_path / "a"))
