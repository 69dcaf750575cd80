"""Progressive tracking (docs/method.md#stage-3-tracking): a video tracked in overlapping chunks gives the tracks of
one pass, with the same ids, on every frame both cover; a box that appears late gets new queries, covered cells
none. The video (tests/tasks/extract/scenes.py): 160 frames, a wall, a sliding box, a box appearing at frame 100."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import get_preset, with_overrides
from tasks.errors import ConfigurationError
from tasks.extract.chunks import chunk_spans
from tasks.extract.keypoints import uncovered_mask
from tasks.extract.progressive import Seeds, track_progressive
from tasks.extract.track import Track
from tests.tasks.extract.scenes import SceneVideo

T, ENTER, CHUNK, OVERLAP = 160, 100, 60, 32


def settings(**over):
    return Track().settings(with_overrides(get_preset("generic"), {"keypoints.reseed_every": 20, **over}))


@pytest.fixture(scope="module")
def runs():
    scene = SceneVideo(T, enter=ENTER)
    one = settings(**{"track.chunk_frames": T})
    chunked = settings(**{"track.chunk_frames": CHUNK, "track.chunk_overlap": OVERLAP})
    ep = scene.episode(one.keypoints, one.track.window_px)
    streamed = track_progressive(scene, Seeds(ep.seed_uv, ep.seed_flat), chunked.track, chunked.keypoints,
                                 chunked.coverage_grid)  # rendered a chunk at a time, never whole
    return scene, Track().run(ep, one), Track().run(ep, chunked), streamed


def test_the_chunks_overlap_and_cover_the_video():
    spans = chunk_spans(T, CHUNK, OVERLAP, keep_back=31)
    assert [(c.lo, c.new, c.hi) for c in spans] == [(0, 0, 60), (28, 60, 88), (56, 88, 116), (84, 116, 144),
                                                     (112, 144, 160)]
    assert chunk_spans(T, T, OVERLAP) == chunk_spans(T, 10 * T, OVERLAP)  # one chunk: the one-pass tracker


def test_chunked_tracks_are_the_one_pass_tracks_with_the_same_ids(runs):
    _, one, chunked, streamed = runs
    n = len(one.query_frame)
    assert n >= 200, n
    # same tracks, same rows (ids): what one pass queried, where and when, the chunked run queried too
    assert (chunked.query_frame == one.query_frame).all() and (chunked.query_uv == one.query_uv).all()
    both = one.visible & chunked.visible
    assert np.abs(one.tracks_uv[both] - chunked.tracks_uv[both]).max() == 0.0  # the very same LK steps
    assert not (chunked.visible & ~one.visible).any()
    # the only difference: one pass also tracks a late query backwards past the chunk in memory (>= OVERLAP back)
    extra_t = np.nonzero(one.visible & ~chunked.visible)
    assert len(extra_t[0]) > 0 and (extra_t[1] < one.query_frame[extra_t[0]] - OVERLAP).all()
    # a chunk read from memory and one rendered on demand give the same tracks
    assert (streamed.query_uv == chunked.query_uv).all() and (streamed.visible == chunked.visible).all()
    assert np.array_equal(streamed.tracks_uv, chunked.tracks_uv, equal_nan=True)


def test_tracks_are_stitched_across_every_chunk_boundary(runs):
    scene, one, chunked, _ = runs
    from_start = chunked.query_frame == 0
    seen_everywhere = chunked.visible[:, [0, 59, 60, 87, 88, 115, 116, 143, 144, T - 1]].all(1)
    assert (from_start & seen_everywhere).sum() >= 100  # one row each from frame 0 to the end, through 4 boundaries
    # the sliding box is followed in its own rows through every chunk, to where it is at frame 144
    u, v, n, m = chunked.query_uv[:, 0], chunked.query_uv[:, 1], scene.side, 6  # inside the box, clear of its edges
    box = from_start & (v >= scene.box_y + m) & (v <= scene.box_y + n - m) & (u >= scene.box_x(0) + m)
    box &= u <= scene.box_x(0) + n - m
    assert box.sum() >= 4
    for c in chunk_spans(T, CHUNK, OVERLAP, keep_back=31):
        assert chunked.visible[box, c.new : c.hi].mean() >= 0.9, c
    at = chunked.visible[:, 144] & box
    err = chunked.tracks_uv[at, 144, 0] - chunked.tracks_uv[at, 0, 0] - (scene.box_x(144) - scene.box_x(0))
    assert at.sum() >= 4 and np.median(np.abs(err)) <= 0.5, err


def test_a_late_object_gets_new_queries_and_covered_cells_none(runs):
    scene, _, chunked, _ = runs
    W, H = scene.image_size
    rows, cols = scene.new_box_cells()
    u, v = chunked.query_uv.T
    on_box = (v >= rows.start) & (v <= rows.stop - 1) & (u >= cols.start) & (u <= cols.stop - 1)
    late = chunked.query_frame >= ENTER
    assert (on_box & late).sum() >= 5, (on_box & late).sum()  # the box appearing at frame 100 is tracked
    assert chunked.visible[on_box & late][:, -1].mean() >= 0.8
    grid = settings().coverage_grid
    for q in np.unique(chunked.query_frame[chunked.query_frame > 0]):  # no query where a visible track already was
        earlier = chunked.query_frame < q
        free = uncovered_mask(chunked.tracks_uv[earlier & chunked.visible[:, q], q], W, H, grid)
        mine = np.rint(chunked.query_uv[chunked.query_frame == q]).astype(int)
        assert free[mine[:, 1], mine[:, 0]].all(), q


def test_an_object_appearing_after_the_last_seed_frame_is_tracked_back_from_the_last_frame():
    scene = SceneVideo(60, enter=45)  # seed frames 0 and 40, then the last one: 59
    s = settings(**{"keypoints.reseed_every": 40})
    ep = Track().run(scene.episode(s.keypoints, s.track.window_px), s)
    rows, cols = scene.new_box_cells()
    u, v = ep.query_uv.T
    on_box = (v >= rows.start) & (v <= rows.stop - 1) & (u >= cols.start) & (u <= cols.stop - 1) & (ep.query_frame == 59)
    assert on_box.sum() >= 5, on_box.sum()
    assert ep.visible[on_box][:, 45:].mean() >= 0.8 and not ep.visible[on_box][:, :45].any()


def test_an_overlap_as_long_as_the_chunk_is_refused():
    scene = SceneVideo(20)
    s = settings(**{"track.chunk_frames": 30, "track.chunk_overlap": 30})
    ep = scene.episode(s.keypoints, s.track.window_px)
    with pytest.raises(ConfigurationError, match=r"track\.chunk_overlap"):
        Track().run(ep, s)


def test_a_long_video_keeps_getting_queries_after_its_tracks_end():
    """`max_points` is spent at frame 0; the video cuts to another wall at frame 80 (and back at 160), so the wall's
    tracks end. Each later chunk tops the budget up by the tracks that ended: the new wall is covered as the old one
    was. A video of one chunk keeps the per-episode budget of the one-pass tracker."""
    budget, cut, n = 60, 80, 200
    scene = SceneVideo(n, cut_every=cut)
    s = settings(**{"keypoints.max_points": budget, "track.chunk_frames": CHUNK, "track.chunk_overlap": OVERLAP})
    ep = Track().run(scene.episode(s.keypoints, s.track.window_px), s)
    W, H = scene.image_size

    def covered(t):
        return 1 - uncovered_mask(ep.tracks_uv[ep.visible[:, t], t], W, H, s.coverage_grid).mean()

    assert (ep.query_frame == 0).sum() == budget  # the first chunk: as before
    late = ep.query_frame >= cut
    assert late.sum() >= 0.8 * budget, np.unique(ep.query_frame, return_counts=True)
    assert covered(0) >= 0.15 and covered(n - 1) >= 0.8 * covered(0), (covered(0), covered(n - 1))
    one = Track().run(scene.episode(s.keypoints, s.track.window_px), settings(**{"keypoints.max_points": budget,
                                                                                  "track.chunk_frames": n}))
    assert len(one.query_frame) == budget and covered(n - 1) > 10 * (
        1 - uncovered_mask(one.tracks_uv[one.visible[:, -1], -1], W, H, s.coverage_grid).mean())
