"""tasks/view/scene.py: what the viewers draw, checked against the geometry it came from."""

from __future__ import annotations

import numpy as np
import pytest

from storage.frame_codec import decode_depth_png16
from tasks.geometry import camera_centers, intrinsics_from_fov, project
from tasks.view.scene import (
    GREY,
    PALETTE,
    EpisodeNotFound,
    entity_colors,
    frustum_corners,
    frustum_segments,
    load_scene,
    point_cloud,
    read_rgbd,
    resolve_episode,
    trace_segments,
    trace_strips,
)
from tests.tasks.view.view_dataset import view_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return view_dataset(tmp_path_factory)


@pytest.fixture(scope="module")
def scene(dataset):
    return load_scene(*dataset)


def test_point_cloud_from_stored_depth_projects_back_to_its_pixels(scene):
    t = 7
    rgb, depth = read_rgbd(scene, t)
    assert depth.shape == (scene.height, scene.width) and rgb.shape == (scene.height, scene.width, 3)
    known = np.isfinite(depth)
    assert 0.3 < known.mean() < 1.0  # the far plane (clipped at 65.535 m) is unknown, the table is not
    pts, colors = point_cloud(depth, rgb, scene.K, scene.w2c[t], stride=1, max_depth_m=10.0)
    assert len(pts) == int((known & (depth <= 10.0)).sum()) and colors.dtype == np.uint8
    uvz = project(pts.astype(np.float64), scene.K, scene.w2c[t])
    v, u = np.nonzero(known & (depth <= 10.0))  # row-major, the order point_cloud keeps
    assert np.abs(uvz[:, 0] - u).max() < 1e-3 and np.abs(uvz[:, 1] - v).max() < 1e-3
    assert np.abs(uvz[:, 2] - depth[v, u]).max() < 1e-5
    np.testing.assert_array_equal(colors, rgb[v, u])


def test_stride_and_far_cut(scene):
    rgb, depth = read_rgbd(scene, 0)
    full, _ = point_cloud(depth, rgb, scene.K, scene.w2c[0], stride=1, max_depth_m=100.0)
    sparse, _ = point_cloud(depth, rgb, scene.K, scene.w2c[0], stride=4, max_depth_m=100.0)
    near, _ = point_cloud(depth, rgb, scene.K, scene.w2c[0], stride=1, max_depth_m=1.0)
    assert 0.04 * len(full) < len(sparse) < 0.09 * len(full)
    assert 0 < len(near) < len(full)
    cam = np.linalg.norm(near - camera_centers(scene.w2c[0]), axis=-1)
    assert cam.max() < 1.0 * np.sqrt(1 + (scene.width / scene.K[0, 0]) ** 2 + (scene.height / scene.K[1, 1]) ** 2)


def test_depth_png16_unknowns():
    import cv2

    mm = np.array([[0, 1000], [65535, 2500]], np.uint16)
    z = decode_depth_png16(cv2.imencode(".png", mm)[1].tobytes())
    assert np.isnan(z[0, 0]) and np.isnan(z[1, 0]) and z[0, 1] == 1.0 and z[1, 1] == 2.5
    assert np.isnan(decode_depth_png16(None, (3, 4))).all()
    with pytest.raises(ValueError, match="16-bit"):
        decode_depth_png16(cv2.imencode(".png", np.zeros((2, 2), np.uint8))[1].tobytes())


def test_frustum_apex_at_camera_centre_and_corners_on_the_image_border():
    K = intrinsics_from_fov(320, 240, 45.0)
    rng = np.random.default_rng(0)
    from scipy.spatial.transform import Rotation

    w2c = np.tile(np.eye(4), (3, 1, 1))
    w2c[:, :3, :3] = Rotation.random(3, random_state=1).as_matrix()
    w2c[:, :3, 3] = rng.normal(size=(3, 3))
    c = frustum_corners(K, w2c, 320, 240, depth_m=0.25)
    assert c.shape == (3, 5, 3)
    np.testing.assert_allclose(c[:, 0], camera_centers(w2c), atol=1e-9)
    for i in range(3):
        uvz = project(c[i, 1:], K, w2c[i])
        np.testing.assert_allclose(uvz[:, :2], [[-0.5, -0.5], [319.5, -0.5], [319.5, 239.5], [-0.5, 239.5]], atol=1e-6)
        np.testing.assert_allclose(uvz[:, 2], 0.25, atol=1e-9)
    seg = frustum_segments(K, w2c, 320, 240, depth_m=0.25)
    assert seg.shape == (3, 8, 2, 3)
    np.testing.assert_allclose(seg[:, :4, 0], np.repeat(camera_centers(w2c)[:, None], 4, axis=1), atol=1e-9)


def test_traces_segments_skip_invisible_steps_and_keep_entity_colours():
    xyz = np.zeros((3, 5, 3))
    xyz[..., 0] = np.arange(5)
    xyz[:, :, 1] = np.arange(3)[:, None]
    visible = np.ones((3, 5), bool)
    visible[1, 2] = False  # track 1: 0-1 and 3-4 are segments, nothing through frame 2
    colors = entity_colors(np.array([0, 0, 3]), np.array([True, False, True]))
    np.testing.assert_array_equal(colors[1], GREY)
    np.testing.assert_array_equal(colors[0], PALETTE[1])
    np.testing.assert_array_equal(colors[2], PALETTE[4])
    seg, col = trace_segments(xyz, visible, colors)
    assert seg.shape == (4 + 2 + 4, 2, 3)
    assert not any((s[:, 1] == 1).all() and 2 in s[:, 0] for s in seg)
    np.testing.assert_array_equal(col[4:6, 0], [GREY, GREY])
    seg, _ = trace_segments(xyz, visible, colors, t0=1, t1=3)
    assert len(seg) == 2 + 0 + 2
    strips, scol = trace_strips(xyz, visible, colors)
    assert [len(s) for s in strips] == [5, 2, 2, 5] and scol.shape == (4, 3)


def test_scene_of_a_real_episode(scene, dataset):
    assert scene.tracks_xyz.shape == (len(scene.cluster_id), scene.n_frames, 3)
    assert scene.w2c.shape == (scene.n_frames, 4, 4) and scene.is_moving.any() and (~scene.is_moving).any()
    # a visible trace point projects inside the image of its frame
    n, t = np.argwhere(scene.visible)[len(np.argwhere(scene.visible)) // 2]
    u, v, z = project(scene.tracks_xyz[n, t], scene.K, scene.w2c[t])
    assert z > 0 and -1 <= u <= scene.width and -1 <= v <= scene.height


def test_episode_ids_by_unique_prefix(dataset):
    root, eid = dataset
    assert resolve_episode(root, eid[:6]) == eid
    assert resolve_episode(root, eid) == eid
    with pytest.raises(EpisodeNotFound, match="no episode id starts with 'zzz'"):
        resolve_episode(root, "zzz")
    with pytest.raises(EpisodeNotFound):
        resolve_episode(root, "  ")
    with pytest.raises(EpisodeNotFound, match="no 'episodes' table"):
        resolve_episode(str(root) + "-missing", "ab")


def test_an_episode_without_samples_is_refused_with_its_errors(dataset):
    from tests.tasks.view.view_dataset import FAILED_ID

    root, _ = dataset
    assert resolve_episode(root, "fff") == FAILED_ID
    with pytest.raises(EpisodeNotFound, match=r"ffffffffffff has no samples to show \(status failed: decode: moov atom"):
        load_scene(root, FAILED_ID)
