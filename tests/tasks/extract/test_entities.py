"""Moving tracks are grouped into rigid entities by how well they keep their mutual distances."""

import numpy as np

from tasks.extract.entities import cluster_moving, separation_change


def _body(rng, n, T, start, velocity, spin=0.0):
    """n points of a rigid body: random offsets around `start`, translating and spinning about z."""
    offsets = rng.uniform(-0.05, 0.05, (n, 3))
    t = np.arange(T)[:, None]
    out = np.empty((n, T, 3))
    for k in range(T):
        a = spin * k
        R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        out[:, k] = start + velocity * t[k] + offsets @ R.T
    return out


def test_two_rigid_bodies_become_two_entities_largest_first():
    rng = np.random.default_rng(0)
    T = 40
    gripper = _body(rng, 12, T, np.array([0.0, 0.0, 0.5]), np.array([0.01, 0.0, 0.0]))
    drawer = _body(rng, 20, T, np.array([0.3, 0.0, 0.5]), np.array([0.0, 0.004, 0.0]), spin=0.01)
    xyz = np.concatenate([gripper, drawer]).astype(np.float32)
    visible = rng.random(xyz.shape[:2]) > 0.2
    ids = cluster_moving(xyz, visible, tol_m=0.02, min_common=5)
    assert set(ids[12:]) == {1} and set(ids[:12]) == {2}, ids  # the larger body is entity 1


def test_separation_change_is_zero_within_a_body_and_grows_across_bodies():
    rng = np.random.default_rng(1)
    a = _body(rng, 3, 20, np.zeros(3), np.array([0.02, 0, 0]))
    b = _body(rng, 3, 20, np.ones(3), np.zeros(3))
    d = separation_change(np.concatenate([a, b]), np.ones((6, 20), bool), min_common=5)
    assert d[:3, :3].max() < 1e-9 and d[3:, 3:].max() < 1e-9
    assert d[:3, 3:].min() > 0.05  # one body moved 0.38 m relative to the other


def test_tracks_never_seen_together_stay_unknown():
    rng = np.random.default_rng(2)
    xyz = _body(rng, 3, 20, np.zeros(3), np.array([0.01, 0, 0]))
    visible = np.zeros((3, 20), bool)
    visible[0, :10] = visible[1, :10] = True
    visible[2, 12:] = True  # shares no frame with the others
    ids = cluster_moving(xyz, visible, tol_m=0.02, min_common=5)
    assert ids[0] == ids[1] > 0 and ids[2] == -1


def test_separation_change_is_the_median_over_shared_frames():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(6, 15, 3))
    visible = rng.random((6, 15)) > 0.3
    got = separation_change(xyz, visible, min_common=2)
    for i in range(6):
        for j in range(6):
            both = visible[i] & visible[j]
            if i == j or both.sum() < 2:
                continue
            d = np.linalg.norm(xyz[i] - xyz[j], axis=-1)[both]
            assert np.isclose(got[i, j], np.median(np.abs(d - d[0]))), (i, j)
