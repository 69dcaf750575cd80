"""Decoding episodes: subsampling, validation errors that name the file and the cause."""

import json
import re

import av
import numpy as np
import pytest

from tasks.config import DecodeConfig, get_preset
from tasks.extract.decode import decode
from tasks.extract.video import subsample_stride
from tasks.extract.intrinsics import resize_intrinsics
from tasks.errors import EpisodeInputError
from tasks.run.episode import run_stages, stages_until
from tasks.geometry import intrinsics_from_fov, project
from tasks.types import EpisodeSource


def write_video(path, n=12, w=64, h=48, fps=20):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), (i * 20) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture
def episode(tmp_path):
    ep = tmp_path / "ep"
    ep.mkdir()
    write_video(ep / "video.mp4")
    np.save(ep / "depth.npy", np.full((12, 48, 64), 1.5, np.float32))
    np.savez(ep / "cameras.npz", K=intrinsics_from_fov(64, 48, 45), w2c=np.tile(np.eye(4), (12, 1, 1)))
    (ep / "meta.json").write_text(json.dumps({"instruction": "wave", "fps": 20}))
    return ep


def src(path, kind="dir"):
    return EpisodeSource(uri=str(path), episode_id="x", kind=kind)


def test_episode_dir_decodes_with_depth_and_cameras(episode):
    ep = decode(src(episode), get_preset("sim").decode)
    assert ep.frames.shape == (12, 48, 64, 3) and ep.depth.shape == (12, 48, 64) and ep.w2c.shape == (12, 4, 4)
    assert ep.fps == 20 and list(ep.frame_index) == list(range(12)) and ep.meta["instruction"] == "wave"


def test_subsampling_keeps_source_frame_numbers(episode):
    ep = decode(src(episode), DecodeConfig(target_fps=5))
    assert subsample_stride(20, 5) == 4
    assert list(ep.frame_index) == [0, 4, 8] and ep.fps == 5 and ep.depth.shape[0] == 3


def test_resized_intrinsics_keep_projection_consistent():
    K = intrinsics_from_fov(640, 480, 60)
    K2 = resize_intrinsics(K, (640, 480), (320, 240))
    X = np.array([[0.1, -0.05, 1.0]])
    uv, uv2 = project(X, K)[0, :2], project(X, K2)[0, :2]
    assert np.allclose((uv2 + 0.5) * 2, uv + 0.5, atol=1e-9)  # pixel centres scale about the corner


def test_bad_inputs_name_file_and_cause(episode, tmp_path):
    cfg = get_preset("sim").decode
    np.save(episode / "depth.npy", np.zeros((12, 24, 32), np.float32))
    with pytest.raises(EpisodeInputError, match=r"depth\.npy: depth has shape \(12, 24, 32\)"):
        decode(src(episode), cfg)
    np.save(episode / "depth.npy", np.full((12, 48, 64), np.nan, np.float32))
    failed = run_stages(src(episode), get_preset("sim"), stages_until("depth"))  # given depth must be mostly valid
    assert re.search(r"depth\.npy: 100% of depth values are NaN", failed.errors["depth"]), failed.errors
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EpisodeInputError, match=r"empty\.mp4: file is empty"):
        decode(src(tmp_path / "empty.mp4", "video"), cfg)
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(EpisodeInputError, match=r"text\.mp4: a text file .*, not a video"):
        decode(src(tmp_path / "text.mp4", "video"), cfg)


def test_plain_video_with_given_depth_is_refused_before_decoding(tmp_path, monkeypatch):
    write_video(tmp_path / "v.mp4", n=40)  # enough frames at the preset's 10 fps: only depth is missing
    monkeypatch.setattr("tasks.extract.decode.read_video", lambda *a: pytest.fail("decoded a video it must refuse"))
    failed = run_stages(src(tmp_path / "v.mp4", "video"), get_preset("generic"))
    assert failed.status == "failed" and "plain video has no depth" in failed.errors["depth"], failed.errors
