"""`mu0 view`: every option, readable refusals, a real server stopped by Ctrl-C; the ingest preview artifact."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.deploy.platform import free_port
from tests.tasks.view.view_dataset import FAILED_ID, view_corpus, view_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return view_dataset(tmp_path_factory)


def text(res) -> str:
    return " ".join(res.output.split())


def test_rrd_and_mp4_by_id_prefix(dataset, tmp_path):
    root, eid = dataset
    rrd, mp4 = tmp_path / "a.rrd", tmp_path / "a.mp4"
    res = runner.invoke(app, ["view", root, "--episode", eid[:8], "--rrd", str(rrd), "--mp4", str(mp4)])
    assert res.exit_code == 0, res.output
    assert f"wrote {rrd}" in text(res) and "(30 frames)" in text(res)
    assert rrd.stat().st_size > 100_000
    with av.open(str(mp4)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30


def test_mp4_alone_with_the_short_option(dataset, tmp_path):
    root, eid = dataset
    mp4 = tmp_path / "b.mp4"
    res = runner.invoke(app, ["view", root, "-e", eid, "--mp4", str(mp4)])
    assert res.exit_code == 0, res.output
    assert mp4.exists() and not (tmp_path / "a.rrd").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episode", "zzz"], "no episode id starts with 'zzz'"),
        (["--episode", "fff"], "has no samples to show (status failed: decode: moov atom not found)"),
        (["--episode", "", "--mp4", "x.mp4"], "give an episode id"),
    ],
)
def test_refusals_are_one_readable_line(dataset, args, message, tmp_path):
    root, _ = dataset
    res = runner.invoke(app, ["view", root, *args])
    assert res.exit_code == 2
    assert message in text(res)
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_frame_outside_the_episode(dataset):
    root, eid = dataset
    res = runner.invoke(app, ["view", root, "--episode", eid[:6], "--frame", "30", "--mp4", "never.mp4"])
    assert res.exit_code == 2 and "--frame 30 is outside 0..29" in text(res)
    assert not os.path.exists("never.mp4")


def test_not_a_dataset(tmp_path):
    res = runner.invoke(app, ["view", str(tmp_path), "--episode", "ab"])
    assert res.exit_code == 2 and "has no 'episodes' table" in text(res)


def test_serves_the_scene_until_ctrl_c(dataset):
    """The real command in a subprocess: prints the URL, serves viser's page and its scene, stops on SIGINT."""
    root, eid = dataset
    port = free_port()
    cmd = [sys.executable, "-m", "flows.cli", "view", root, "--episode", eid[:10], "--frame", "4",
           "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "Ctrl-C" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "mu0 view exited early"
        url = re.search(r"http://\S+", line).group(0)
        assert url == f"http://127.0.0.1:{port}" and "30 frames" in line
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ingest_posts_a_preview_artifact(prefect_harness, tmp_path_factory, tmp_path):
    from prefect.artifacts import Artifact

    from flows.ingest import ingest
    from tasks.config import get_preset

    report = ingest(str(view_corpus(tmp_path_factory)), str(tmp_path / "traces"), get_preset("sim"), runner="sequential")
    assert report.ok == 1
    art = Artifact.get("ingest-preview")
    assert art is not None and art.type == "markdown"
    data = re.search(r"!\[ingest preview\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", art.data).group(1)
    img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3)
    assert "mu0 view" in art.data


def test_a_preview_that_fails_does_not_fail_the_run(prefect_harness, dataset, tmp_path):
    from flows.ingest import preview
    from tasks.run.episode import EpisodeResult

    root, eid = dataset
    ghost = EpisodeResult(episode_id="0" * 64, source_uri="ghost", status="ok", errors={}, n_samples=5)
    assert preview(root, [ghost]) is None  # logged, not raised
    nothing = EpisodeResult(episode_id=FAILED_ID, source_uri="broken", status="failed", errors={"decode": "x"})
    assert preview(root, [nothing]) is None
