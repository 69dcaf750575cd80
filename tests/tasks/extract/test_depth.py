"""The depth-anything stage: predicted meters at the stored resolution, median-scaled to partial given depth."""

import time

import numpy as np
import pytest

from models.depth_anything import save_random_depth_anything
from tasks.config import DepthConfig, get_preset, with_overrides
from tasks.extract.depth import estimate_depth, median_depth_ratio, predict_depth
from tasks.errors import ConfigurationError
from tasks.types import Episode, EpisodeSource


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(save_random_depth_anything(tmp_path_factory.mktemp("depth-anything-tiny")))


def config(model, **depth):
    return with_overrides(get_preset("generic"), {"depth.backend": "depth-anything", "depth.model": model, **{
        f"depth.{k}": v for k, v in depth.items()}})


def frames(T=5, H=50, W=70, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (H // 5 + 1, W // 5 + 1, 3), np.uint8).repeat(5, 0).repeat(5, 1)[:H, :W]
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(T)])


def episode(fr, depth=None):
    return Episode(source=EpisodeSource("clip", "x", kind="video"), frames=fr, depth=depth)


def test_median_ratio_recovers_a_known_factor_through_noise_and_holes():
    rng = np.random.default_rng(1)
    given = rng.uniform(0.5, 3.0, (4, 30, 40)).astype(np.float32)
    predicted = given * 1.7 * rng.lognormal(0, 0.05, given.shape).astype(np.float32)
    predicted[0, :5] = 50.0  # a few gross outliers do not move a median
    holes = rng.random(given.shape) < 0.9
    sparse = np.where(holes, np.nan, given)
    assert median_depth_ratio(predicted, sparse) == pytest.approx(1.7, rel=0.01)
    assert np.isnan(median_depth_ratio(predicted, None))
    assert np.isnan(median_depth_ratio(predicted, np.full_like(given, np.nan)))
    assert np.isnan(median_depth_ratio(predicted, sparse, min_px=given.size))  # too few pixels: nothing given


def test_prediction_is_meters_at_the_stored_resolution(tiny_dir):
    fr = frames()
    ep = estimate_depth(episode(fr), config(tiny_dir).depth)
    assert ep.depth.shape == (5, 50, 70) and ep.depth.dtype == np.float32
    assert ep.depth_source == "depth-anything" and np.isnan(ep.depth_scale_ratio)
    d = ep.depth[np.isfinite(ep.depth)]
    assert d.size > 0.99 * ep.depth.size and 0 < d.min() and d.max() <= 4.0  # the tiny model's max_depth
    assert d.std() > 1e-3  # follows the image, not a constant
    assert ep.K is not None and ep.K[0, 0] == pytest.approx(35 / np.tan(np.radians(30)))  # 60 deg prior
    # Batching changes nothing.
    one = predict_depth(fr, DepthConfig(backend="depth-anything", model=tiny_dir, batch_size=1))
    np.testing.assert_allclose(one, ep.depth, rtol=1e-4, atol=1e-5)


def test_partial_given_depth_sets_the_scale(tiny_dir):
    fr = frames(T=6)
    cfg = config(tiny_dir)
    raw = predict_depth(fr, cfg.depth)
    given = np.full_like(raw, np.nan)
    given[[1, 4]] = raw[[1, 4]] / 2.5  # two frames of true depth: the model reads 2.5x too far
    given[1, ::2] = np.nan  # and sparse at that
    ep = estimate_depth(episode(fr, given), cfg.depth)
    assert ep.depth_scale_ratio == pytest.approx(2.5, rel=1e-4)
    np.testing.assert_allclose(ep.depth, raw / 2.5, rtol=1e-4)  # every frame, given or not
    off = estimate_depth(episode(fr, given), config(tiny_dir, scale_to_given=False).depth)
    assert off.depth_scale_ratio == pytest.approx(2.5, rel=1e-4)  # still reported
    np.testing.assert_allclose(off.depth, raw, rtol=1e-5)


def test_given_backend_keeps_depth_and_only_fills_missing_K():
    fr = frames(T=2)
    ep = estimate_depth(episode(fr, np.ones((2, 50, 70), np.float32)), get_preset("generic").depth)
    assert ep.depth_source == "" and ep.depth.max() == 1.0 and ep.K[0, 2] == 34.5


def test_bad_model_dir_names_it_and_the_option(tmp_path):
    (tmp_path / "empty").mkdir()
    for where, what in [(tmp_path / "empty", "has no config.json"), (tmp_path / "nowhere", "does not exist")]:
        with pytest.raises(ConfigurationError, match=what) as err:
            estimate_depth(episode(frames(T=1)), config(str(where)).depth)
        assert str(where) in str(err.value) and "--depth-model DIR" in str(err.value)


def test_missing_hub_weights_fail_fast_and_say_how_to_point_at_a_copy():
    hub_id = "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf"
    t0 = time.perf_counter()
    with pytest.raises(ConfigurationError) as err:
        estimate_depth(episode(frames(T=1)), config(hub_id).depth)
    assert time.perf_counter() - t0 < 10  # HF_HUB_OFFLINE=1: no retries against an unreachable hub
    msg = str(err.value)
    assert hub_id in msg and "--depth-model DIR" in msg and "HF_HUB_OFFLINE" in msg


def test_relative_depth_checkpoints_are_refused(tmp_path):
    from models.depth_anything import random_depth_anything

    model, processor = random_depth_anything("tiny")
    model.config.depth_estimation_type = "relative"
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ConfigurationError, match="relative depth, not meters"):
        estimate_depth(episode(frames(T=1)), config(str(tmp_path)).depth)
