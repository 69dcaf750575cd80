"""Discovery: directories, globs, manifests, ids that change with content and settings."""

import pytest

from tasks.config import get_preset
from tasks.run.discover import SourceError, discover


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"aaa")
    (tmp_path / "b.mov").write_bytes(b"bbb")
    (tmp_path / "notes.txt").write_text("not an episode")
    ep = tmp_path / "ep1"
    ep.mkdir()
    (ep / "video.mp4").write_bytes(b"ccc")
    (tmp_path / "empty-dir").mkdir()
    return tmp_path


def test_directory_lists_videos_and_episode_dirs(tree):
    found = discover(str(tree), get_preset("sim"))
    assert [s.uri.rsplit("/", 1)[-1] for s in found] == ["a.mp4", "b.mov", "ep1"]
    assert [s.kind for s in found] == ["video", "video", "dir"]
    assert len({s.episode_id for s in found}) == 3


def test_glob_and_manifest(tree):
    assert len(discover(str(tree / "*.mp4"), get_preset("sim"))) == 1
    manifest = tree / "list.txt"
    manifest.write_text("# corpus\nep1\n\na.mp4\n")
    found = discover(str(manifest), get_preset("sim"))
    assert sorted(s.uri.rsplit("/", 1)[-1] for s in found) == ["a.mp4", "ep1"]


def test_ids_depend_on_bytes_and_settings(tree):
    sim = {s.uri: s.episode_id for s in discover(str(tree), get_preset("sim"))}
    generic = {s.uri: s.episode_id for s in discover(str(tree), get_preset("generic"))}
    assert sim.keys() == generic.keys() and all(sim[k] != generic[k] for k in sim)
    (tree / "a.mp4").write_bytes(b"changed")
    again = {s.uri: s.episode_id for s in discover(str(tree), get_preset("sim"))}
    assert again[str(tree / "a.mp4")] != sim[str(tree / "a.mp4")]
    assert again[str(tree / "ep1")] == sim[str(tree / "ep1")]


def test_bad_sources_say_what_was_expected(tree):
    with pytest.raises(SourceError, match="does not exist"):
        discover(str(tree / "nope"), get_preset("sim"))
    with pytest.raises(SourceError, match="no episodes"):
        discover(str(tree / "empty-dir"), get_preset("sim"))
    bad = tree / "bad.txt"
    bad.write_text("missing-episode\n")
    with pytest.raises(SourceError, match="missing-episode"):
        discover(str(bad), get_preset("sim"))
