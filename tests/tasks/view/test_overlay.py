"""tasks/view/overlay.py: future traces drawn where the samples say, an mp4 PyAV can read back."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from storage.frame_codec import decode_jpeg
from storage.query import frame_blobs, samples_of
from tasks.view.overlay import draw_future_traces, future_traces, overlay_frame, overlay_png, write_overlay_mp4
from tasks.view.scene import load_scene
from tests.tasks.view.view_dataset import view_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return view_dataset(tmp_path_factory)


def trace_mask(uv: np.ndarray, valid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels on the valid future points (rounded), inside the image."""
    mask = np.zeros(shape, bool)
    pts = np.rint(uv[valid]).astype(int)
    inside = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < shape[1]) & (pts[:, 1] < shape[0])
    mask[pts[inside, 1], pts[inside, 0]] = True
    return mask


def test_draw_on_a_blank_image_exactly_where_the_traces_run():
    img = np.zeros((40, 60, 3), np.uint8)
    uv = np.array([[[5.0, 5.0], [25.0, 5.0], [50.0, 5.0], [50.0, 30.0]]])
    valid = np.array([[True, True, False, True]])  # the 25 -> 50 step and 50 -> (50, 30) are gaps
    out = draw_future_traces(img, uv, valid, np.array([[255, 0, 0]], np.uint8))
    assert img.max() == 0  # the input is not drawn on
    assert out[5, 15, 0] > 100 and out[5, 15, 1] == 0  # on the first run, in the trace's colour
    assert out[5, 40].max() == 0 and out[18, 50].max() == 0  # no line bridges a gap
    assert out[5, 5, 0] > 200  # the dot at the keypoint


def test_overlay_frame_differs_from_the_raw_frame_on_the_traces(dataset):
    root, eid = dataset
    scene, samples = load_scene(root, eid), samples_of(root, eid)
    t = int(samples["frame"][3].as_py())
    raw = decode_jpeg(frame_blobs(root, eid, [t], "jpeg")[0])
    drawn = overlay_frame(scene, samples, t)
    uv, valid, track = future_traces(samples, t)
    assert len(track) > 5 and valid.sum() > 50
    on = trace_mask(uv, valid, raw.shape[:2])
    diff = np.abs(drawn.astype(int) - raw.astype(int)).sum(-1)
    assert (diff[on] > 30).mean() > 0.5  # most trace pixels changed
    far = cv2.dilate(on.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert (diff[far] > 0).mean() < 0.01  # and the rest of the frame did not
    # a frame without samples comes back untouched
    no_sample = sorted(set(range(scene.n_frames)) - set(samples["frame"].to_pylist()))[0]
    raw_last = decode_jpeg(frame_blobs(root, eid, [no_sample], "jpeg")[0])
    np.testing.assert_array_equal(overlay_frame(scene, samples, no_sample), raw_last)


def test_overlay_png_is_one_decodable_frame(dataset):
    root, eid = dataset
    png = overlay_png(root, eid)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    scene = load_scene(root, eid)
    assert img.shape == (scene.height, scene.width, 3)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_mp4_has_every_frame_at_the_stored_size_with_traces(dataset, tmp_path):
    root, eid = dataset
    scene, samples = load_scene(root, eid), samples_of(root, eid)
    path = tmp_path / "qc" / "overlay.mp4"
    n = write_overlay_mp4(root, eid, path)
    assert n == scene.n_frames
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert abs(float(stream.average_rate) - scene.fps) < 1e-6
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == scene.n_frames and frames[0].shape == (scene.height, scene.width, 3)
    t = int(samples["frame"][3].as_py())
    raw = decode_jpeg(frame_blobs(root, eid, [t], "jpeg")[0]).astype(int)
    uv, valid, _ = future_traces(samples, t)
    on = trace_mask(uv, valid, raw.shape[:2])
    diff = np.abs(frames[t].astype(int) - raw).sum(-1)
    assert np.median(diff[on]) > 3 * max(np.median(diff[~on]), 1.0)  # traces stand out over codec noise
