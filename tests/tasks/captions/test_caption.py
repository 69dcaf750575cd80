"""Stage 7 on hand-built episodes whose motion is known: segmentation, template text, merges, rows."""

from __future__ import annotations

import numpy as np
import pytest

from storage import schema as S
from tasks.captions.merge import build_hierarchy
from tasks.captions.records import Caption, Captions
from tasks.captions.template import EpisodeText, third_person
from tasks.captions.caption import caption
from tasks.config import CaptionConfig, IngestConfig, RetargetConfig
from tasks.extract.rows import sample_rows
from tasks.captions.segment import segment_episode
from tasks.types import Samples
from tests.tasks.captions.caption_episodes import T, make_episode, object_path

def test_chunks_cut_between_the_known_motion_bursts(tmp_path):
    # acceleration peaks at the starts and ends of the two bursts (15, 50, 85, 120): cuts in the valleys
    chunks = segment_episode(make_episode(tmp_path), CaptionConfig())
    starts = [a for a, _ in chunks]
    assert chunks[0][0] == 0 and chunks[-1][1] == T - 1 and len(chunks) == 4
    assert [abs(s - e) <= 4 for s, e in zip(starts[1:], [32, 67, 102])] == [True] * 3, chunks


def test_camera_motion_does_not_move_the_cuts_when_poses_are_known(tmp_path):
    still = segment_episode(make_episode(tmp_path), CaptionConfig())
    shaky = make_episode(tmp_path, camera_shake=0.2, n_background=400)
    assert segment_episode(shaky, CaptionConfig()) == still
    # without poses the shake is ego-motion: 400 tracks move each frame, so those frames are excluded
    blind = make_episode(tmp_path, camera_shake=0.2, n_background=400, with_poses=False)
    assert len(segment_episode(blind, CaptionConfig())) == 1
    assert len(segment_episode(blind, CaptionConfig(ego_min_keypoints=10_000))) > 1


def test_template_states_entity_direction_distance_and_gripper(tmp_path):
    ep = caption(make_episode(tmp_path), IngestConfig(preset="sim").captions)
    motion = ep.captions.level("motion")
    first, last = motion[1], motion[3]  # frames ~32-67: the end of the +x burst; ~102-159: the end of the up burst
    assert first.instruction_1.startswith("Moving part 3 travels") and "right" in first.instruction_1
    assert "up" in last.instruction_1 and "open the drawer" in last.instruction_2
    # the chunk measured over its own frames: the share of each burst inside it, in cm
    d = object_path()
    cm = 100 * np.linalg.norm(d[first.end_frame] - d[first.start_frame])
    assert f"{cm:.0f} cm" in first.instruction_1
    closing = [c for c in motion if c.start_frame < 55 <= c.end_frame - 7]
    assert closing and all("grasp" in c.skill_labels and "closes" in c.instruction_1 for c in closing)
    assert all(c.embodiment == "robot_gripper" for c in ep.captions.items)


def test_the_gripper_is_read_from_the_demonstration(tmp_path):
    ep = make_episode(tmp_path)  # its actions come with the demonstration, as decode reads sim and LeRobot ones
    no_demo = caption(ep.replace(demo=None), IngestConfig(preset="sim").captions)
    assert not any("closes" in c.instruction_1 for c in no_demo.captions.items)
    motion = caption(ep, IngestConfig(preset="sim").captions).captions.level("motion")
    assert [c for c in motion if c.start_frame < 55 <= c.end_frame - 7 and "closes" in c.instruction_1]


def test_merges_give_three_levels_with_union_spans():
    text = EpisodeText("open the drawer", "human_hand")
    spans = [(0, 29), (30, 59), (60, 89), (90, 119)]
    motion = [Caption(i, "motion", a, b, f"The hand moves {i}.", f"Move {i} to open the drawer.", f"Could you move {i}?",
                      ("reach",) if i % 2 else ("grasp",), "human_hand") for i, (a, b) in enumerate(spans)]
    items = build_hierarchy(motion, text, 120)
    sub = [c for c in items if c.level == "subtask"]
    assert [(c.start_frame, c.end_frame) for c in sub] == [(0, 59), (30, 89), (60, 119), (0, 89), (30, 119)]
    for c in sub:
        kids = [motion[i] for i in c.children]
        assert c.start_frame == kids[0].start_frame and c.end_frame == kids[-1].end_frame
        assert c.instruction_1.startswith(kids[0].instruction_1)
    assert sub[0].instruction_2 == "Move 0, then move 1 to open the drawer."
    assert sub[3].skill_labels == ("grasp", "reach")
    (task,) = [c for c in items if c.level == "task"]
    assert (task.start_frame, task.end_frame) == (0, 119) and task.instruction_1 == "The human hand opens the drawer in 4 motion segments."
    ids = [c.caption_id for c in items]
    assert len(ids) == 4 + 5 + 1 == len(set(ids))


def test_third_person():
    assert third_person("pick up the puck and place it at the goal") == "picks up the puck and places it at the goal"
    assert third_person("push the puck and the cube") == "pushes the puck and the cube"
    assert third_person("carry the box") == "carries the box"


def test_table_and_sample_caption_ids(tmp_path):
    ep = caption(make_episode(tmp_path), IngestConfig(preset="sim").captions)
    table = ep.captions.to_table("ep-known")
    assert table.schema.equals(S.CAPTIONS) and table.num_rows == len(ep.captions.items) == 4 + 5 + 1
    emb = np.array(table["embedding"].to_pylist(), np.float32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert set(table["level"].to_pylist()) == {"motion", "subtask", "task"}
    frames = np.array([0, 45, 159], np.int32)
    M, L, LH = 3, 4, 2
    samples = Samples(frames=frames, offsets=np.arange(M + 1), track_index=np.zeros(M, np.int32),
                      keypoints_uv=np.zeros((M, 2), np.float32), future=np.zeros((M, L, 3), np.float32),
                      future_valid=np.ones((M, L), bool), history=np.zeros((M, LH, 3), np.float32),
                      history_valid=np.ones((M, LH), bool), cluster_id=np.zeros(M, np.int32))
    rows = sample_rows(ep.replace(samples=samples), IngestConfig(retarget=RetargetConfig(future_len=L, history_len=LH)))
    got = rows["caption_ids"].to_pylist()
    for f, ids in zip(frames, got):
        want = [c.caption_id for c in ep.captions.items if c.start_frame <= f <= c.end_frame]
        assert ids == want and len(ids) >= 2  # at least its motion chunk and the task caption


def test_off_backend_and_duplicate_ids(tmp_path):
    ep = make_episode(tmp_path)
    assert caption(ep, CaptionConfig(backend="off")).captions is None
    c = Caption(0, "motion", 0, 1, "a", "b", "c", ("reach",), "unknown")
    with pytest.raises(ValueError, match="not unique"):
        Captions((c, c), np.zeros((2, 384), np.float32))
