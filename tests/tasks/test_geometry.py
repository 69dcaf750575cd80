"""Pinhole geometry: the conventions every later stage relies on."""

from __future__ import annotations

import numpy as np

from tasks.geometry import inside_image, invert_rigid, project, sample_bilinear, transform, unproject


def random_pose(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    T = np.eye(4)
    T[:3, :3] = q
    T[:3, 3] = rng.normal(size=3)
    return T


def random_K(rng: np.random.Generator) -> np.ndarray:
    f = rng.uniform(200, 800)
    return np.array([[f, 0, rng.uniform(100, 300)], [0, f * rng.uniform(0.9, 1.1), rng.uniform(80, 200)], [0, 0, 1]])


def test_project_unproject_round_trip_broadcast_over_tracks_and_frames():
    rng = np.random.default_rng(0)
    N, T = 7, 5
    K = random_K(rng)
    w2c = np.stack([random_pose(rng) for _ in range(T)])
    cam = np.concatenate([rng.uniform(-1, 1, (N, T, 2)), rng.uniform(0.5, 4, (N, T, 1))], -1)
    world = transform(invert_rigid(w2c), cam)  # (T,4,4) broadcasts against (N,T,3)
    uvz = project(world, K, w2c)
    assert uvz.shape == (N, T, 3)
    np.testing.assert_allclose(uvz[..., 2], cam[..., 2], atol=1e-9)
    np.testing.assert_allclose(uvz[..., 0], K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2], atol=1e-8)
    back = unproject(uvz[..., :2], uvz[..., 2], K, w2c)
    np.testing.assert_allclose(back, world, atol=1e-9)
    np.testing.assert_allclose(unproject(uvz[..., :2], uvz[..., 2], K), cam, atol=1e-9)


def test_principal_point_is_optical_axis():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(project(np.array([0.0, 0.0, 3.0]), K), [319.5, 239.5, 3.0])
    np.testing.assert_allclose(project(np.array([0.3, -0.6, 3.0]), K), [369.5, 139.5, 3.0])


def test_invert_rigid_matches_general_inverse():
    rng = np.random.default_rng(1)
    T = np.stack([random_pose(rng) for _ in range(4)])
    inv = invert_rigid(T)
    np.testing.assert_allclose(inv, np.linalg.inv(T), atol=1e-12)
    np.testing.assert_allclose(T @ inv, np.broadcast_to(np.eye(4), T.shape), atol=1e-12)


def test_inside_image_half_pixel_border():
    W, H = 20, 10
    uv = np.array([[-0.5, 0], [-0.5001, 0], [W - 0.5, 0], [W - 0.4999, 0], [0, -0.5], [0, H - 0.5], [0, H - 0.49]])
    np.testing.assert_array_equal(inside_image(uv, W, H), [True, False, True, False, True, True, False])


def test_sample_bilinear_exact_on_linear_ramp():
    H, W = 6, 8
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    img = 2.0 * u + 3.0 * v + 1.0
    uv = np.array([[0.0, 0.0], [2.25, 1.5], [6.99, 4.01], [3.7, 0.2]])
    np.testing.assert_allclose(sample_bilinear(img, uv), 2 * uv[:, 0] + 3 * uv[:, 1] + 1, atol=1e-12)
    # the right/bottom edge and outside have no full 2x2 neighbourhood
    assert np.isnan(sample_bilinear(img, np.array([[W - 1.0, 1.0], [-0.1, 1.0], [1.0, H - 0.5]]))).all()
    img[2, 3] = np.nan
    out = sample_bilinear(img, np.array([[2.5, 1.5], [5.5, 1.5]]))
    assert np.isnan(out[0]) and out[1] == 2 * 5.5 + 3 * 1.5 + 1
