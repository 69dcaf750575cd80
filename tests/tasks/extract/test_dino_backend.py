"""The `dino` keypoint backend through the pipeline: DINOv2 entities seed tracks at their own query frames,
and each track keeps its entity as `cluster_id` (a tiny random DINOv2 saved locally: the real loading path)."""

from __future__ import annotations

import numpy as np
import pytest

from models.dino_patches import save_random_dinov2
from tasks.config import get_preset, with_overrides
from tasks.run.discover import discover
from tasks.run.episode import run_stages, stages_until
from tasks.sim.generate import run_episode


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    return run_episode(tmp_path_factory.mktemp("sim"), "push", 3, width=160, height=120, max_steps=30)


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return str(save_random_dinov2(tmp_path_factory.mktemp("dinov2-tiny")))


def extract(episode, settings: dict):
    cfg = with_overrides(get_preset("sim"), settings)
    (src,) = discover(str(episode), cfg)
    return run_stages(src, cfg, stages_until("entities"))


def test_dino_seeds_are_tracked_from_their_own_frames_with_their_entities(episode, dino_dir):
    settings = {"keypoints.backend": "dino", "keypoints.dino.model": dino_dir, "keypoints.dino.device": "cpu",
                "keypoints.dino.input_size": 112, "keypoints.dino.every_k": 5, "keypoints.dino.points_per_entity": 24,
                "filter.min_track_coverage": 0.0}  # random DINO weights: few entities, coverage is not the point here
    ep = extract(episode, settings)
    assert ep.status == "ok", ep.errors
    assert len(ep.query_frame) >= 20 and set(np.unique(ep.query_frame)) <= set(range(0, ep.n_frames, 5))
    assert len(np.unique(ep.query_frame)) > 1  # keypoints are spread over frames, not all seeded at frame 0
    assert (ep.cluster_id >= 0).all() and len(np.unique(ep.cluster_id)) >= 2  # the entities, not the rigid groups
    at_query = ep.tracks_uv[np.arange(len(ep.query_frame)), ep.query_frame]
    assert np.abs(at_query - ep.query_uv).max() < 1e-3  # each track starts on its query pixel
    assert ep.visible[np.arange(len(ep.query_frame)), ep.query_frame].all()


def test_a_missing_dino_model_fails_the_episode_naming_the_setting(episode, tmp_path):
    ep = extract(episode, {"keypoints.backend": "dino", "keypoints.dino.model": str(tmp_path / "nowhere")})
    assert ep.status == "failed" and "keypoints.dino.model" in " ".join(ep.errors.values())
