"""Motion segmentation (docs/method.md#stage-7-segmentation-and-captions) on signals whose chunk
boundaries are known."""

import numpy as np

from tasks.captions.segment import acceleration_signal, segment


def bumps(T: int, centres: list[int], width: float = 8.0, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    t = np.arange(T)
    x = sum(np.exp(-0.5 * ((t - c) / width) ** 2) for c in centres)
    return x + np.random.default_rng(seed).normal(0, noise, T)


def test_cuts_fall_in_the_valleys_between_motion_bursts():
    chunks = segment(bumps(300, [50, 150, 250]))
    assert len(chunks) == 3
    assert chunks[0][0] == 0 and chunks[-1][1] == 299
    for (a, b), (c, _) in zip(chunks[:-1], chunks[1:]):
        assert c == b + 1
    assert abs(chunks[1][0] - 100) <= 6 and abs(chunks[2][0] - 200) <= 6


def test_length_and_count_limits():
    close = segment(bumps(200, [40, 55, 150]), min_len=25)  # the first two bursts are one chunk
    assert len(close) == 2 and all(b - a + 1 >= 25 for a, b in close)
    many = segment(bumps(900, list(range(50, 900, 100))), max_chunks=6)
    assert len(many) == 6
    long = segment(np.zeros(500), max_len=200)  # no motion peaks: split to respect the length cap
    assert len(long) == 3 and all(b - a + 1 <= 200 for a, b in long)


def test_excluded_frames_do_not_create_peaks():
    x = bumps(300, [60, 240])
    x[140:160] = 50.0  # ego-motion burst: it would dwarf the real motion peaks
    excl = np.zeros(300, bool)
    excl[140:160] = True
    chunks = segment(x, exclude=excl, max_len=400)
    assert len(chunks) == 2 and 100 < chunks[1][0] < 200
    assert len(segment(x, max_len=400)) == 1  # without the exclusion only the ego burst is a peak


def test_acceleration_signal_sees_only_tracks_visible_around_t():
    T = 40
    t = np.arange(T, dtype=float)
    u = np.where(t < 20, t, 20 + 3 * (t - 20))  # velocity jumps 1 -> 3 px/frame at t = 20
    uvz = np.stack([u, np.zeros(T), np.ones(T)], -1)[None]
    vis = np.ones((1, T), bool)
    acc = acceleration_signal(uvz, vis, margin=2)
    assert np.isclose(acc[20], 2.0) and np.allclose(acc[3:19], 0.0) and np.isnan(acc[0])
    vis[0, 18] = False
    assert np.isnan(acceleration_signal(uvz, vis, margin=2)[20])
