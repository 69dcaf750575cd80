"""Intrinsics for episodes without K: metadata first (meta.json, the container's tags), else the FOV prior."""

import json
import math

import numpy as np
import pytest

from tasks.config import DecodeConfig, DepthConfig, get_preset, with_overrides
from tasks.extract.decode import decode
from tasks.errors import EpisodeInputError
from tasks.geometry import project
from tasks.extract.intrinsics import ensure_intrinsics, intrinsics_from_hfov, intrinsics_from_metadata
from tasks.types import Episode, EpisodeSource
from tests.tasks.extract.videos import write_video

PLAIN = {"depth.backend": "depth-anything", "pose.backend": "open3d"}


def test_fov_prior_gives_the_documented_focal():
    K = intrinsics_from_hfov(640, 480, 60.0)
    assert K[0, 0] == pytest.approx(320 / math.tan(math.radians(30))) == pytest.approx(554.256, abs=1e-3)
    assert K[1, 1] == K[0, 0] and (K[0, 2], K[1, 2]) == (319.5, 239.5)
    # A ray at half the field of view lands on the outer edge of the last pixel column.
    u, v = project(np.array([[math.tan(math.radians(30)), 0.0, 1.0]]), K)[0, :2]
    assert u == pytest.approx(639.5) and v == pytest.approx(239.5)


def test_prior_is_the_configured_fov_and_recorded():
    ep = Episode(source=EpisodeSource("x", "x"), frames=np.zeros((2, 48, 64, 3), np.uint8))
    out = ensure_intrinsics(ep, DepthConfig(fov_prior_deg=90))
    assert out.K[0, 0] == pytest.approx(32.0) and out.meta["intrinsics"] == "prior hfov 90 deg"
    given = ep.replace(K=np.eye(3) * 7)
    assert ensure_intrinsics(given, DepthConfig()).K is given.K  # a K from the episode is never replaced


def test_metadata_order_and_units():
    assert intrinsics_from_metadata({}, {}, 64, 48) is None
    K, why = intrinsics_from_metadata({"K": [[50, 0, 30], [0, 50, 20], [0, 0, 1]], "fov_deg": 90}, {}, 64, 48)
    assert K[0, 0] == 50 and why == "meta.json K"
    K, why = intrinsics_from_metadata({"vfov_deg": 90}, {}, 64, 48)
    assert K[1, 1] == pytest.approx(24.0) and K[0, 0] == K[1, 1] and "vfov_deg" in why
    # 26 mm equivalent (a phone's main camera) on 1920x1080: the diagonal maps to the 43.27 mm full-frame one.
    K, why = intrinsics_from_metadata({}, {"com.apple.quicktime.camera.focal_length.35mm_equivalent": "26"}, 1920, 1080)
    assert K[0, 0] == pytest.approx(26 * math.hypot(1920, 1080) / math.hypot(36, 24)) == pytest.approx(1323.7, abs=0.1)
    with pytest.raises(EpisodeInputError, match="meta.json: K must be"):
        intrinsics_from_metadata({"K": [1, 2, 3]}, {}, 64, 48)
    with pytest.raises(EpisodeInputError, match="fov_deg=400"):
        intrinsics_from_metadata({"fov_deg": 400}, {}, 64, 48)


def test_plain_video_reads_the_containers_focal_length(tmp_path):
    tag = "com.apple.quicktime.camera.focal_length.35mm_equivalent"
    video = write_video(tmp_path / "phone.mp4", w=128, h=96, tags={tag: "26"})
    cfg = with_overrides(get_preset("generic"), PLAIN).model_copy(update={"decode": DecodeConfig(max_width=64)})
    ep = decode(EpisodeSource(str(video), "x", kind="video"), cfg.decode)
    f_full = 26 * math.hypot(128, 96) / math.hypot(36, 24)
    assert ep.frames.shape[1:3] == (48, 64)
    assert ep.K[0, 0] == pytest.approx(f_full / 2) and ep.K[0, 2] == pytest.approx(31.5)  # follows the downscale
    assert tag in ep.meta["intrinsics"]
    bare = decode(EpisodeSource(str(write_video(tmp_path / "bare.mp4")), "y", kind="video"), cfg.decode)
    assert bare.K is None and "intrinsics" not in bare.meta  # the depth stage sets the prior


def test_episode_dir_without_cameras_uses_meta_json_fov(tmp_path):
    ep_dir = tmp_path / "ep"
    ep_dir.mkdir()
    write_video(ep_dir / "video.mp4", w=64, h=48)
    (ep_dir / "meta.json").write_text(json.dumps({"fov_deg": 90, "instruction": "look"}))
    ep = decode(EpisodeSource(str(ep_dir), "x"), with_overrides(get_preset("generic"), PLAIN).decode)
    assert ep.K[0, 0] == pytest.approx(32.0) and ep.meta["intrinsics"].endswith("fov_deg=90")
    assert ep.depth is None and ep.w2c is None
