"""Episode directories with partial depth (a few frames, NaN-heavy) and no cameras, through decode + depth."""

import json

import numpy as np
import pytest

from models.depth_anything import save_random_depth_anything
from tasks.config import get_preset, with_overrides
from tasks.extract.depth import predict_depth
from tasks.run.episode import run_stages, stages_until
from tasks.types import EpisodeSource
from tests.tasks.extract.videos import write_video

DECODE_AND_DEPTH = stages_until("depth")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_random_depth_anything(tmp_path_factory.mktemp("depth-anything-tiny")))


@pytest.fixture
def partial_episode(tmp_path):
    ep = tmp_path / "ep"
    ep.mkdir()
    write_video(ep / "video.mp4", n=12, w=64, h=48)
    (ep / "meta.json").write_text(json.dumps({"hfov_deg": 70, "instruction": "pour"}))
    return ep


def test_predicted_depth_is_scaled_to_the_few_given_frames(partial_episode, tiny_dir):
    overrides = {"depth.backend": "depth-anything", "depth.model": tiny_dir, "pose.backend": "open3d"}
    cfg = with_overrides(get_preset("generic"), overrides)
    ep = run_stages(EpisodeSource(str(partial_episode), "x"), cfg, stages_until("decode"))
    raw = predict_depth(ep.frames, cfg.depth)
    given = np.full((12, 48, 64), np.nan, np.float32)  # 9 of 12 frames unknown: 'given' would reject this
    given[[0, 5, 9]] = raw[[0, 5, 9]] * 0.6
    np.save(partial_episode / "depth.npy", given)

    ep = run_stages(EpisodeSource(str(partial_episode), "x"), cfg, DECODE_AND_DEPTH)
    assert ep.status == "ok", ep.errors
    assert ep.depth_scale_ratio == pytest.approx(1 / 0.6, rel=1e-4)
    np.testing.assert_allclose(ep.depth, raw * 0.6, rtol=1e-4)
    assert ep.depth_source == "depth-anything" and ep.meta["intrinsics"].endswith("hfov_deg=70")
    assert ep.K[0, 0] == pytest.approx(32 / np.tan(np.radians(35)))

    given_cfg = get_preset("generic")  # the same file with --depth given stays an input error
    failed = run_stages(EpisodeSource(str(partial_episode), "x"), given_cfg, DECODE_AND_DEPTH)
    assert failed.status == "failed" and "75% of depth values are NaN" in failed.errors["depth"]
    assert "depth.npy" in failed.errors["depth"]
