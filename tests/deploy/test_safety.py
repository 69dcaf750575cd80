"""Sources outside the configured roots are refused: ../ escapes, symlinks, manifests."""

from __future__ import annotations

import os

import pytest

from tasks.run.discover import SourceError
from tasks.run.safety import ROOTS_ENV, OutsideRootsError, check_source, check_within_roots, outside_roots, roots_from_env
from tests.tasks.run.source_tree import episode_dir, root_and_outside


@pytest.fixture
def tree(tmp_path):
    return root_and_outside(tmp_path)


def test_inside_passes_and_resolves(tree):
    root, _ = tree
    assert check_within_roots([root / "ep1", root / "x" / ".." / "ep1"], [root]) == [(root / "ep1").resolve()] * 2


def test_dotdot_escape_is_refused_with_a_clear_message(tree):
    root, other = tree
    with pytest.raises(OutsideRootsError) as err:
        check_within_roots([root / ".." / "other" / "secret"], [root])
    msg = str(err.value)
    assert "outside the allowed roots" in msg and str(other / "secret") in msg and str(root) in msg
    assert ROOTS_ENV in msg
    assert isinstance(err.value, SourceError)  # the CLI already prints SourceError nicely


def test_symlinked_entry_and_symlink_inside_an_episode_are_refused(tree):
    root, other = tree
    (root / "link").symlink_to(other / "secret")
    ep = episode_dir(root / "ep2")
    (ep / "depth.npy").symlink_to(other / "secret" / "video.mp4")
    bad = dict(outside_roots([root / "link", ep, root / "ep1"], [root]))
    assert set(bad) == {root / "link", ep / "depth.npy"}
    assert bad[root / "link"] == (other / "secret").resolve()


def test_manifest_with_dotdot_lines_is_refused(tree, tmp_path):
    root, _ = tree
    manifest = root / "m.txt"
    manifest.write_text("ep1\n../other/secret\n")
    with pytest.raises(OutsideRootsError, match="secret"):
        check_source(str(manifest), [root])
    manifest.write_text("ep1\n")
    assert check_source(str(manifest), [root]) == [(root / "ep1").resolve()]


def test_roots_from_env_and_unrestricted_default(tree, monkeypatch):
    root, other = tree
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    assert roots_from_env() == []
    assert check_source(str(other)) == [(other / "secret").resolve()]  # no roots configured: unrestricted
    monkeypatch.setenv(ROOTS_ENV, f"{root}{os.pathsep}{tree[0] / 'nope'}")
    assert roots_from_env() == [root, root / "nope"]
    with pytest.raises(OutsideRootsError):
        check_source(str(other))
    with pytest.raises(OutsideRootsError, match="no allowed source roots"):
        check_within_roots([root], [])
