"""A LeRobot v3 episode read by stage 0: its camera's slice of the shared AV1 mp4, its data rows, its task.

Everything is checked against the fixture's formulas (tests/lerobot_fixture.py): states, actions and
timestamps exactly, pixels as 8x8 patch means within the AV1 tolerance its README states (+-24 per channel;
a whole front frame within 2.5 mean absolute error, and closer to its own formula image than to the next
frame's, so an off-by-one slice fails).
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import get_preset, with_overrides
from tasks.extract.decode import decode
from tasks.extract.lerobot_episode import read_tasks
from tasks.run.discover import discover
from tests.lerobot_fixture import (
    FRONT, LENGTHS, TASKS, WRIST, action, fixture_root, front, front_patches, split_last_episode, state, wrist_patches,
    writable_copy,
)

PATCH_TOLERANCE = 24.0  # per channel, on 8x8 patch means (../shared/lerobot/README.md)
FRAME_MAE = 2.5  # mean absolute error of a whole front frame (the README measures <= 2.4)
CFG = with_overrides(get_preset("generic"), {"depth.backend": "depth-anything", "pose.backend": "open3d"})


def decoded(root, settings: dict | None = None, **lerobot):
    cfg = with_overrides(CFG, {**(settings or {}), **{f"lerobot.{k}": v for k, v in lerobot.items()}})
    return [decode(s, cfg.decode, 1, cfg.lerobot) for s in discover(str(root), cfg)]


def assert_patches(frames: np.ndarray, e: int, patches) -> None:
    for f, img in enumerate(frames):
        for name, (rows, cols, want) in patches(e, f).items():
            got = img[rows, cols].reshape(-1, 3).mean(0)
            assert np.abs(got - want).max() <= PATCH_TOLERANCE, (e, f, name, got, want)


def assert_front_frames(frames: np.ndarray, e: int) -> None:
    assert frames.shape == (LENGTHS[e], 96, 128, 3)
    assert_patches(frames, e, front_patches)
    for f, img in enumerate(frames):
        err = np.abs(img - front(e, f)).mean()
        assert err <= FRAME_MAE, (e, f, err)
        if f + 1 < LENGTHS[e]:
            assert err < np.abs(img - front(e, f + 1)).mean(), (e, f)


def assert_demonstration(ep, e: int) -> None:
    n = LENGTHS[e]
    assert np.array_equal(ep.demo.states, np.stack([state(e, f) for f in range(n)]))
    assert np.array_equal(ep.demo.actions, np.stack([action(e, f) for f in range(n)]))
    assert np.array_equal(ep.demo.timestamps_s, (np.arange(n) / 10).astype(np.float32))  # the float32 column
    assert ep.demo.fps == 10.0 and ep.demo.source_index == e


def test_every_episode_gives_its_frames_task_states_and_actions():
    eps = decoded(fixture_root())
    assert [ep.n_frames for ep in eps] == list(LENGTHS)
    for e, ep in enumerate(eps):
        assert ep.source.kind == "lerobot" and ep.source.lerobot.index == e
        assert ep.meta["instruction"] == ep.meta["task"] == TASKS[e]
        assert ep.fps == 10.0 and np.array_equal(ep.frame_index, np.arange(LENGTHS[e]))
        assert ep.depth is None and ep.w2c is None and ep.errors == {}
        assert_front_frames(ep.frames, e)
        assert_demonstration(ep, e)


def test_the_task_strings_are_read_from_the_pandas_index_of_tasks_parquet():
    assert read_tasks(fixture_root()) == dict(enumerate(TASKS))


def test_another_camera_and_a_subset_of_episodes():
    eps = decoded(fixture_root(), camera=WRIST, episodes=(2, 0))
    assert [ep.source.lerobot.index for ep in eps] == [2, 0]
    for ep in eps:
        e = ep.source.lerobot.index
        assert ep.frames.shape == (LENGTHS[e], 64, 64, 3) and ep.source.uri.endswith(f"#episode={e}&camera={WRIST}")
        assert_patches(ep.frames, e, wrist_patches)
        assert_demonstration(ep, e)


def test_subsampling_keeps_the_whole_demonstration():
    (ep,) = decoded(fixture_root(), {"decode.target_fps": 5}, episodes=(1,))
    assert np.array_equal(ep.frame_index, np.arange(0, 30, 2)) and ep.fps == 5.0
    assert ep.demo.states.shape == (30, 8) and ep.demo.actions.shape == (30, 7)


def test_episodes_split_over_data_and_video_files(tmp_path):
    """Episode 2 in data/chunk-001 and videos/K/chunk-001 (from 0 s): the path templates find it."""
    root = writable_copy(tmp_path / "split")
    split_last_episode(root)
    eps = decoded(root)
    assert eps[2].source.lerobot.video.endswith(f"videos/{FRONT}/chunk-001/file-000.mp4")
    assert eps[2].source.lerobot.data.endswith("data/chunk-001/file-000.parquet")
    for e, ep in enumerate(eps):
        assert_front_frames(ep.frames, e)
        assert_demonstration(ep, e)
    assert [s.episode_id for s in discover(str(root), CFG)] != [s.episode_id for s in discover(str(fixture_root()), CFG)]


@pytest.mark.parametrize("keys", [{"state_key": None}, {"state_key": None, "action_key": None}])
def test_a_key_set_to_null_stores_nothing_of_it(keys):
    (ep,) = decoded(fixture_root(), episodes=(0,), **keys)
    if len(keys) == 2:
        assert ep.demo is None
    else:
        assert ep.demo.states.shape == (25, 0) and ep.demo.actions.shape == (25, 7)
