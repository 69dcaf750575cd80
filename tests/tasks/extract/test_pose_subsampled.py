"""Camera poses when the preset keeps fewer frames than the source has (issue 17, item 3).

An orbiting camera subsampled to 5 fps of its 20 fps source turns up to 6 degrees per stored frame;
with keyframes only every 5 frames, 8 of the 15 frames could not be registered (ATE 12 cm). Keyframes
inserted where registration weakens keep every frame registered; frames that still cannot be are
bridged from their neighbours, counted, and noted on the episode.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tasks.config import get_preset, with_overrides
from tasks.errors import EpisodeInputError
from tasks.extract.decode import decode
from tasks.extract.pose import PoseEstimate, bridge, estimate_camera_poses, estimate_poses, lost_message
from tasks.run.discover import discover
from tasks.sim.pose_score import pose_errors, true_w2c

# the generic preset's setup (given depth, estimated poses) at 5 and 10 fps of the 20 fps simulator
AT_5FPS = with_overrides(get_preset("generic"), {"pose.backend": "open3d", "decode.target_fps": 5.0})
AT_10FPS = with_overrides(get_preset("generic"), {"pose.backend": "open3d", "decode.target_fps": 10.0})


@pytest.fixture(scope="module")
def orbit_source(tmp_path_factory):
    """One 60-frame orbit-camera episode at 20 fps (up to 1.6 degrees per source frame)."""
    from tasks.sim.generate import generate_corpus

    out = tmp_path_factory.mktemp("orbit")
    generate_corpus(out, 1, ["pick-place"], camera="orbit", max_steps=60, seed=0)
    return discover(str(out), AT_5FPS)[0]


def step_deg(w2c: np.ndarray) -> np.ndarray:
    rel = w2c[1:, :3, :3] @ np.swapaxes(w2c[:-1, :3, :3], 1, 2)
    return np.degrees(Rotation.from_matrix(rel).magnitude())


def test_every_frame_registers_at_several_degrees_per_stored_frame(orbit_source):
    ep = decode(orbit_source, AT_5FPS.decode)
    gt = true_w2c(ep)
    assert ep.n_frames == 15 and step_deg(gt).max() > 6.0  # as hard as the report: keyframes 5 frames apart fail
    est = estimate_camera_poses(ep.frames, ep.depth, ep.K, AT_5FPS.pose)
    err = pose_errors(np.linalg.inv(est.c2w), gt)
    assert est.n_lost == 0, est.lost  # was 8 of 15 before keyframe insertion
    assert len(est.keyframes) > len(range(0, ep.n_frames, AT_5FPS.pose.keyframe_every))  # keyframes were inserted
    # 13 renders (the simulator's RGB is not bit-reproducible): ATE 0.15-0.82 cm, max rotation error 0.15-0.66 deg;
    # keyframes every 5 frames gave 12.3 cm and 14 deg
    assert err.ate_cm < 1.5 and err.rot_max_deg < 1.0, err


def test_blank_frames_are_bridged_and_noted(orbit_source):
    ep = decode(orbit_source, AT_10FPS.decode)
    frames = ep.frames.copy()
    frames[[4, 5, 9]] = 0  # black frames: no corners, no registration
    out = estimate_poses(ep.replace(frames=frames), AT_10FPS.pose)
    assert out.status == "ok"
    assert out.meta["pose_bridged_frames"] == 3 and out.meta["pose_lost_frames"] == 3
    assert out.errors["pose_note"] == "3 of 30 frames bridged from their neighbours (frames 4, 5, 9)"
    err = pose_errors(out.w2c, true_w2c(ep))
    assert err.ate_cm < 1.0 and err.rot_max_deg < 1.0, err  # 5 renders: 0.22-0.33 cm, 0.34-0.39 deg (interpolated)


def test_episode_with_most_frames_blank_fails_naming_the_cause(orbit_source):
    ep = decode(orbit_source, AT_10FPS.decode)
    frames = ep.frames.copy()
    frames[8:24] = 0
    with pytest.raises(EpisodeInputError, match=r"lost on \d+ of 30 frames .*: 16 of them have too little texture or depth"):
        estimate_poses(ep.replace(frames=frames), AT_10FPS.pose)


def test_clean_episode_carries_no_note(orbit_source):
    ep = estimate_poses(decode(orbit_source, AT_10FPS.decode), AT_10FPS.pose)
    assert ep.meta["pose_bridged_frames"] == 0 and "pose_note" not in ep.errors


def test_fast_camera_failure_suggests_a_frame_rate(orbit_source):
    ep = decode(orbit_source, AT_5FPS.decode)  # 5 fps of 20: a stride of 4
    lost = np.arange(3, 12)
    est = PoseEstimate(
        np.tile(np.eye(4), (15, 1, 1)), np.ones(15), np.zeros(0), lost, np.array([0, 1, 2]), np.zeros(len(lost), bool), 14.0
    )
    msg = lost_message(est, ep)
    assert "turns up to 14 deg per stored frame" in msg and "--set decode.target_fps=12" in msg, msg
    flat = PoseEstimate(est.c2w, est.frame_scale, est.chunk_scales, lost, est.keyframes, np.ones(len(lost), bool), 14.0)
    assert "too little texture or depth" in lost_message(flat, ep)


def test_bridge_interpolates_in_se3_and_holds_at_the_ends():
    T = 8
    truth = np.tile(np.eye(4), (T, 1, 1))
    truth[:, :3, :3] = Rotation.from_rotvec(np.outer(np.arange(T), [0.02, 0.1, -0.03])).as_matrix()  # constant rate
    truth[:, :3, 3] = np.outer(np.arange(T), [0.01, -0.02, 0.005])
    ok = np.array([False, True, True, False, False, True, True, False])
    out = bridge(np.where(ok[:, None, None], truth, np.eye(4)), ok)
    np.testing.assert_allclose(out[3:5], truth[3:5], atol=1e-12)
    np.testing.assert_allclose(out[0], truth[1])  # the ends hold the nearest registered pose
    np.testing.assert_allclose(out[7], truth[6])
