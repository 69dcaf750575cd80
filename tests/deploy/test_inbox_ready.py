"""The inbox takes only finished entries: a .done marker, or unchanged across two looks."""

from __future__ import annotations

import threading
import time

import pytest

from flows.inbox import candidates, ready_entries


def _episode(d, size=64):
    d.mkdir(parents=True)
    (d / "video.mp4").write_bytes(b"\0" * size)
    return d


def test_only_episode_like_entries_are_candidates(tmp_path):
    _episode(tmp_path / "ep")
    _episode(tmp_path / ".hidden")
    (tmp_path / "not-yet").mkdir()  # no video.mp4 or frames/ yet
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "clip2.mp4.part").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "clip.mp4.done").touch()
    assert [p.name for p in candidates(tmp_path)] == ["clip.mp4", "ep"]


def test_growing_file_is_left_for_a_later_run(tmp_path):
    _episode(tmp_path / "done-ep")
    growing = _episode(tmp_path / "copying-ep")
    stop = threading.Event()

    def writer():
        with open(growing / "depth.npy", "ab") as fh:
            while not stop.is_set():
                fh.write(b"\1" * 128)
                fh.flush()
                time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.05)
        ready = ready_entries(tmp_path, settle_seconds=0.3)
    finally:
        stop.set()
        t.join()
    assert [p.name for p in ready] == ["done-ep"]
    assert [p.name for p in ready_entries(tmp_path, settle_seconds=0.1)] == ["copying-ep", "done-ep"]


def test_done_marker_is_taken_without_waiting_and_can_be_required(tmp_path):
    _episode(tmp_path / "marked")
    (tmp_path / "marked" / ".done").touch()
    (tmp_path / "clip.mp4").write_bytes(b"x" * 10)
    (tmp_path / "clip.mp4.done").touch()
    _episode(tmp_path / "unmarked")
    t0 = time.monotonic()
    assert [p.name for p in ready_entries(tmp_path, settle_seconds=30, require_done_marker=True)] == ["clip.mp4", "marked"]
    assert time.monotonic() - t0 < 5
    assert [p.name for p in ready_entries(tmp_path, settle_seconds=0.1)] == ["clip.mp4", "marked", "unmarked"]


def test_missing_inbox_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="inbox"):
        ready_entries(tmp_path / "nope")


def test_inbox_flow_refuses_links_out_of_the_inbox(tmp_path, prefect_harness):
    from flows.inbox import MANIFEST_DIR, inbox_ingest
    from tasks.run.safety import OutsideRootsError

    inbox, other = tmp_path / "inbox", tmp_path / "other"
    inbox.mkdir()
    _episode(other / "secret")
    (inbox / "evil").symlink_to(other / "secret")
    with pytest.raises(OutsideRootsError, match="evil") as err:
        inbox_ingest(str(inbox), dataset=str(tmp_path / "ds"), settle_seconds=0.1)
    assert str((other / "secret").resolve()) in str(err.value)
    assert not (inbox / MANIFEST_DIR).exists() and not (tmp_path / "ds").exists()
