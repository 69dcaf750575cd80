"""A LeRobot v3 dataset as a source: one episode source per LeRobot episode, stable ids, and every refusal
naming the file or key at fault with the valid choices (broken copies of the shared fixture)."""

from __future__ import annotations

import shutil

import pytest

from tasks.config import get_preset, with_overrides
from tasks.run.discover import SourceError, discover
from tasks.run.episode import run_stages, stages_until
from tests.lerobot_fixture import FRONT, LENGTHS, WRIST, edit_episode, edit_info, fixture_root, writable_copy

CFG = with_overrides(get_preset("generic"), {"depth.backend": "depth-anything", "pose.backend": "open3d"})


def ids(root, cfg=CFG) -> list[str]:
    return [s.episode_id for s in discover(str(root), cfg)]


def test_one_source_per_episode_with_the_first_camera_by_default():
    found = discover(str(fixture_root()), CFG)
    assert [s.lerobot.index for s in found] == [0, 1, 2] and [s.lerobot.length for s in found] == list(LENGTHS)
    assert {s.kind for s in found} == {"lerobot"} and {s.lerobot.camera for s in found} == {FRONT}
    assert [(s.lerobot.from_s, s.lerobot.to_s) for s in found] == [(0.0, 2.5), (2.5, 5.5), (5.5, 7.5)]
    assert len(set(ids(fixture_root()))) == 3


def test_ids_are_stable_and_change_only_with_what_changes_the_data(tmp_path):
    base = ids(fixture_root())
    copy = writable_copy(tmp_path / "elsewhere")
    edit_info(copy, total_frames=75, new_field_lerobot_might_add={"a": 1})  # unknown keys are ignored
    assert ids(copy) == base  # another place, the same content: resume finds them
    assert ids(fixture_root(), with_overrides(CFG, {"lerobot.episodes": [2]})) == base[2:]
    assert ids(fixture_root(), with_overrides(CFG, {"corpus": "lab", "depth.gpus": 1})) == base
    for other in ({"lerobot.camera": WRIST}, {"lerobot.state_key": None}, {"decode.target_fps": 5}):
        assert not set(ids(fixture_root(), with_overrides(CFG, other))) & set(base), other
    edit_episode(copy, 1, **{f"stats/{FRONT}/count": [31]})  # the episode's content statistics changed
    assert [a == b for a, b in zip(ids(copy), base)] == [True, False, True]


def test_a_folder_of_datasets_and_videos(tmp_path):
    shutil.copytree(fixture_root(), tmp_path / "robot")
    (tmp_path / "clip.mp4").write_bytes(b"not decoded by discovery")
    found = discover(str(tmp_path), CFG)
    assert [s.kind for s in found] == ["video", "lerobot", "lerobot", "lerobot"]


@pytest.mark.parametrize(
    "edit, settings, words",
    [
        ({"codebase_version": "v2.1"}, {}, ["'v2.1' is not supported", "v3.0 (any v3.x)", "info.json"]),
        ({}, {"lerobot.camera": "observation.images.top"}, ["'observation.images.top'", FRONT, WRIST, "--camera"]),
        ({}, {"lerobot.episodes": [1, 7]}, ["no episode 7", "episode_index 0-2"]),
        ({}, {"lerobot.state_key": "observation.joints"}, ["'observation.joints'", "observation.state", "action", "null"]),
        ({}, {"depth.backend": "given"}, ["needs a depth feature", "video.is_depth_map", "--depth depth-anything"]),
        ({}, {"pose.backend": "given"}, ["no camera poses", "--pose open3d"]),
    ],
)
def test_refusals_name_the_key_and_the_choices(tmp_path, edit, settings, words):
    root = writable_copy(tmp_path / "ds")
    edit_info(root, **edit)
    with pytest.raises(SourceError) as err:
        discover(str(root), with_overrides(CFG, settings))
    assert all(w in str(err.value) for w in words), str(err.value)


def failed_decode(root, index: int) -> str:
    src = next(s for s in discover(str(root), CFG) if s.lerobot.index == index)
    ep = run_stages(src, CFG, stages_until("decode"))
    assert ep.status == "failed", ep.errors
    return ep.errors["decode"]


def test_a_missing_video_file_fails_its_episodes_naming_the_file(tmp_path):
    root = writable_copy(tmp_path / "ds")
    video = root / f"videos/{FRONT}/chunk-000/file-000.mp4"
    video.unlink()
    assert failed_decode(root, 1) == f"{video}: file not found"
    ok = next(s for s in discover(str(root), with_overrides(CFG, {"lerobot.camera": WRIST})) if s.lerobot.index == 1)
    assert run_stages(ok, CFG, stages_until("decode")).status == "ok"  # the other camera's file is there


def test_a_time_range_outside_the_video_fails_naming_the_file_and_range(tmp_path):
    root = writable_copy(tmp_path / "ds")
    edit_episode(root, 2, **{f"videos/{FRONT}/to_timestamp": 9.5})
    msg = failed_decode(root, 2)
    assert "file-000.mp4" in msg and "[5.5, 9.5) s lies outside the file" in msg and "7.5 s" in msg, msg


def test_rows_that_disagree_with_the_metadata_fail_naming_the_data_file(tmp_path):
    root = writable_copy(tmp_path / "ds")
    edit_episode(root, 0, length=24, **{f"videos/{FRONT}/to_timestamp": 2.4})
    msg = failed_decode(root, 0)
    assert "file-000.parquet" in msg and "25 rows of episode 0, meta/episodes says 24" in msg, msg
