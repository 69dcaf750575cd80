"""Local rigid carry: lost points follow the motion of neighbours that moved like them."""

import numpy as np
from scipy.spatial.transform import Rotation

from tasks.extract.rigid import carry, kabsch_batch


def test_kabsch_recovers_a_known_motion():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(4, 10, 3))
    R = Rotation.from_rotvec(rng.normal(size=(4, 3)) * 0.3).as_matrix()
    t = rng.normal(size=(4, 3))
    dst = np.einsum("nij,nkj->nki", R, src) + t[:, None]
    R2, t2 = kabsch_batch(src, dst, np.ones((4, 10)))
    assert np.allclose(R2, R, atol=1e-9) and np.allclose(t2, t, atol=1e-9)


def test_carry_follows_rigid_neighbours_and_ignores_other_motion():
    rng = np.random.default_rng(1)
    body = rng.uniform(-0.02, 0.02, size=(20, 3))
    R = Rotation.from_rotvec([0, 0, 0.1]).as_matrix()
    moved_body = body @ R.T + [0.01, 0.0, 0.0]
    table = rng.uniform(-0.02, 0.02, size=(20, 3)) + [0.0, 0.0, -0.01]  # static, interleaved with the body
    before = np.concatenate([body, table])
    after = np.concatenate([moved_body, table])
    vel = after - before
    p = np.array([[0.005, 0.0, 0.0]])
    # the lost point was moving with the body: it is carried by the body's rigid motion
    out, used = carry(p, before, after, point_vel=vel[:1], anchor_vel=vel, vel_tol_m=0.003)
    assert used[0] >= 3
    assert np.allclose(out[0], p[0] @ R.T + [0.01, 0, 0], atol=1e-9)
    # a static point hidden by the moving body stays where it was
    out, used = carry(p, before, after, point_vel=np.zeros((1, 3)), anchor_vel=vel, vel_tol_m=0.003)
    assert np.allclose(out[0], p[0], atol=1e-12)


def test_carry_without_anchors_keeps_points():
    p = np.array([[1.0, 2.0, 3.0]])
    out, used = carry(p, np.zeros((0, 3)), np.zeros((0, 3)))
    assert used[0] == 0 and np.array_equal(out, p)
