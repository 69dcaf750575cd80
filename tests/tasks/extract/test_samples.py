"""Samples stage on synthetic episodes with hand-computed retargeted traces."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import FilterConfig, RetargetConfig
from tasks.geometry import project
from tasks.extract.motion_filter import filter_tracks
from tasks.extract.retarget import retarget
from tasks.extract.samples import build_samples
from tasks.types import Episode, EpisodeSource

W, H, T = 64, 48, 10
K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
CFG = RetargetConfig(future_len=16, history_len=8)
t_ = np.arange(T, dtype=np.float64)


def episode(xyz: np.ndarray, w2c: np.ndarray, moving: np.ndarray | None = None) -> Episode:
    vis = np.isfinite(xyz).all(-1)
    uv = np.stack([project(xyz[:, t], K, w2c[t])[:, :2] for t in range(T)], 1)
    return Episode(
        source=EpisodeSource(uri="mem://samples", episode_id="s"),
        frames=np.zeros((T, H, W, 3), np.uint8),
        K=K,
        w2c=w2c,
        tracks_uv=np.where(vis[..., None], uv, np.nan).astype(np.float32),
        visible=vis,
        tracks_xyz=xyz.astype(np.float32),
        cluster_id=np.arange(len(xyz), dtype=np.int32) + 10,
        is_moving=moving,
    )


def world_tracks() -> np.ndarray:
    xyz = np.zeros((3, T, 3))
    xyz[0] = np.stack([-0.4 + 0.1 * t_, np.zeros(T), np.full(T, 2.0)], -1)  # 2.5 px/frame along u
    xyz[1] = [0.1, 0.1, 2.0]  # static
    xyz[2] = np.stack([np.zeros(T), -0.3 + 0.05 * t_, np.full(T, 2.0)], -1)  # 1.25 px/frame along v
    xyz[2, 6:] = np.nan  # lost after frame 5
    return xyz


def test_static_camera_samples_by_hand():
    ep = filter_tracks(episode(world_tracks(), np.tile(np.eye(4), (T, 1, 1))), FilterConfig())
    np.testing.assert_array_equal(ep.is_moving, [True, False, True])
    s = build_samples(ep.replace(status="ok"), CFG).samples
    # clock: the faster track 0 (top 1 of 2) moves 2.5/64 normalised per frame -> tau_i = 1.28 i.
    # track 0 needs 2 samples past the anchor within its remaining frames: anchors 0..6.
    # track 2 (lost after 5) keeps 2 such samples only for anchors 0..2.
    np.testing.assert_array_equal(s.frames, np.arange(7))
    np.testing.assert_array_equal(s.offsets, [0, 2, 4, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(s.track_index, [0, 2, 0, 2, 0, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(s.cluster_id, s.track_index + 10)
    assert 1 not in s.track_index  # static track excluded
    assert s.future.dtype == np.float32 and s.history.dtype == np.float32
    assert s.future.shape == (10, 16, 3) and s.history.shape == (10, 8, 3)
    np.testing.assert_array_equal(s.future[:, 0, :2], s.keypoints_uv)
    assert s.future_valid[:, 0].all() and s.history_valid[:, 0].all()

    i = np.arange(16)
    f0 = s.future[0]  # track 0 at t=0: u = 21.5 + 2.5 * 1.28 i while tau <= 9 (i <= 7)
    np.testing.assert_array_equal(s.future_valid[0], i <= 7)
    np.testing.assert_allclose(f0[:8], np.stack([21.5 + 3.2 * i[:8], np.full(8, 23.5), np.full(8, 2.0)], -1), atol=1e-4)
    assert np.isnan(f0[8:]).all()
    # track 2 at t=0: v = 16 + 1.25 * 1.28 i, valid while tau <= 5 (i <= 3)
    np.testing.assert_array_equal(s.future_valid[1], i <= 3)
    np.testing.assert_allclose(s.future[1, :4, 1], 16.0 + 1.6 * i[:4], atol=1e-4)
    # track 0 at t=6: future 2 steps (tau 1.28, 2.56 <= 3); history runs back to frame 0 (u decreasing)
    k = 9
    assert s.track_index[k] == 0 and s.frames[np.searchsorted(s.offsets, k, side="right") - 1] == 6
    np.testing.assert_array_equal(s.future_valid[k], i <= 2)
    j = np.arange(8)
    np.testing.assert_array_equal(s.history_valid[k], j <= 4)  # tau 1.28 j <= 6
    np.testing.assert_allclose(s.history[k, :5, 0], 36.5 - 3.2 * j[:5], atol=1e-4)
    assert np.isnan(s.history[k, 5:]).all() and np.isnan(s.future[k, 3:]).all()
    # history at anchor 0 is just the anchor
    assert s.history_valid[0].tolist() == [True] + [False] * 7


def test_moving_camera_static_point_has_constant_future():
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, 0, 3] = -0.05 * t_  # camera slides along +x: 1.25 px/frame of apparent motion
    xyz = world_tracks()
    ep = episode(xyz, w2c)
    assert filter_tracks(ep, FilterConfig()).is_moving.tolist() == [True, False, True]  # ego-motion removed
    s = build_samples(ep.replace(is_moving=np.array([True, True, False])), CFG).samples
    for f, t in enumerate(s.frames):
        rows = np.arange(s.offsets[f], s.offsets[f + 1])
        static = rows[s.track_index[rows] == 1]
        assert static.size == 1
        r = static[0]
        expected = [31.5 + 25 * (0.1 - 0.05 * t), 23.5 + 2.5, 2.0]  # where camera t sees the point
        np.testing.assert_allclose(s.keypoints_uv[r], expected[:2], atol=1e-4)
        fut = s.future[r][s.future_valid[r]]
        assert len(fut) >= 3
        np.testing.assert_allclose(fut, np.tile(expected, (len(fut), 1)), atol=1e-4)
        hist = s.history[r][s.history_valid[r]]
        np.testing.assert_allclose(hist, np.tile(expected, (len(hist), 1)), atol=1e-4)
    # from a fixed camera t only world motion shows: track 0 moves along +u, v and z constant
    r = int(np.flatnonzero(s.track_index == 0)[0])
    fv = s.future[r][s.future_valid[r]]
    assert np.all(np.diff(fv[:, 0]) > 0) and np.allclose(fv[:, 1:], fv[0, 1:], atol=1e-4)


def test_no_moving_tracks_gives_empty_samples():
    ep = episode(world_tracks(), np.tile(np.eye(4), (T, 1, 1)), moving=np.zeros(3, bool))
    s = build_samples(ep, CFG).samples
    assert s.n_frames == 0 and s.offsets.tolist() == [0]
    assert s.future.shape == (0, 16, 3) and s.history.shape == (0, 8, 3) and s.keypoints_uv.shape == (0, 2)
    # a moving track that is off-screen everywhere contributes nothing either
    xyz = world_tracks()[:1] + np.array([5.0, 0, 0])
    assert build_samples(episode(xyz, np.tile(np.eye(4), (T, 1, 1)), np.ones(1, bool)), CFG).samples.n_frames == 0


def per_anchor_reference(ep: Episode, cfg: RetargetConfig) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The samples stage written the plain way, one `retarget` call per anchor and direction."""
    xyz = ep.tracks_xyz.astype(np.float64)
    known = ep.visible & np.isfinite(xyz).all(-1)
    moving = np.flatnonzero(ep.is_moving)
    width, height = ep.image_size
    rows = []
    for t in range(xyz.shape[1]):
        idx = moving[known[moving, t]]
        uvz = project(xyz[idx], K, ep.w2c[t])
        ok = known[idx] & np.isfinite(uvz).all(-1) & (uvz[..., 2] > 0)
        u, v = uvz[:, t, 0], uvz[:, t, 1]
        on = ok[:, t] & (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)
        if not on.any():
            continue
        fut, fut_ok = retarget(uvz[on, t:], ok[on, t:], width, height, cfg, cfg.future_len)
        keep = fut_ok[:, 1:].sum(1) >= cfg.min_future_steps
        if keep.any():
            hist, hist_ok = retarget(uvz[on][keep, t::-1], ok[on][keep, t::-1], width, height, cfg, cfg.history_len)
            rows.append((t, idx[on][keep], fut[keep], hist))
    return rows


@pytest.mark.parametrize("chunk", [1 << 21, 200])  # one batch of anchors, and many small ones
def test_all_anchors_at_once_equal_one_retarget_per_anchor(monkeypatch, chunk):
    """A moving camera, tracks that leave the image, get occluded and pause: batching changes nothing."""
    import tasks.extract.samples

    monkeypatch.setattr(tasks.extract.samples, "CHUNK_ELEMENTS", chunk)
    rng = np.random.default_rng(3)
    n = 40
    start = np.stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.4, 0.4, n), rng.uniform(1.5, 3.0, n)], -1)
    speed = rng.normal(0, 0.04, (n, 3)) * (rng.random((n, 1)) < 0.8)  # a fifth stand still
    pause = (t_ >= 4) & (t_ <= 5)  # everything pauses for two frames
    xyz = start[:, None] + speed[:, None] * np.cumsum(~pause)[None, :, None]
    xyz[rng.random((n, T)) < 0.15] = np.nan  # occlusions
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, 0, 3] = 0.03 * np.sin(t_)  # the camera sways
    ep = episode(xyz, w2c, moving=rng.random(n) < 0.7)
    s = build_samples(ep, CFG.model_copy(update={"top_frac": 0.1})).samples  # top 10%: several tracks set the clock
    ref = per_anchor_reference(ep, CFG.model_copy(update={"top_frac": 0.1}))
    assert len(ref) > 5 and s.n_frames == len(ref)
    np.testing.assert_array_equal(s.frames, [r[0] for r in ref])
    np.testing.assert_array_equal(s.track_index, np.concatenate([r[1] for r in ref]))
    np.testing.assert_array_equal(s.future, np.concatenate([r[2] for r in ref]).astype(np.float32))
    np.testing.assert_array_equal(s.history, np.concatenate([r[3] for r in ref]).astype(np.float32))
    assert s.future_valid.sum() > 3 * len(s.track_index)  # real futures, not just anchors


def test_an_anchor_sees_only_the_frames_within_max_span():
    """Long videos: each anchor's future and history reach at most `max_span_frames` frames (the stage stays linear
    in length); a span covering the episode changes nothing."""
    ep = filter_tracks(episode(world_tracks(), np.tile(np.eye(4), (T, 1, 1))), FilterConfig()).replace(status="ok")
    full = build_samples(ep, CFG).samples
    whole = build_samples(ep, CFG.model_copy(update={"max_span_frames": T - 1})).samples
    for f in full.__dataclass_fields__:
        assert np.array_equal(getattr(full, f), getattr(whole, f), equal_nan=True), f
    short = build_samples(ep, CFG.model_copy(update={"max_span_frames": 3})).samples
    # the clock runs 1.28 samples a frame: three frames past the anchor hold samples 0, 1.28 and 2.56
    assert short.n_frames > 0 and short.future_valid.sum(1).max() == 3 < full.future_valid.sum(1).max()
    assert short.history_valid.sum(1).max() <= 3 < full.history_valid.sum(1).max()
