"""tasks/view/rerun_recording.py: a .rrd that rerun's own CLI verifies and that holds every entity we log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.view.scene import EpisodeNotFound
from tasks.view.rerun_recording import ENTITIES, write_rrd
from tests.tasks.view.view_dataset import FAILED_ID, view_dataset

RERUN = Path(sys.executable).parent / "rerun"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return view_dataset(tmp_path_factory)


def rerun_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RERUN_ANALYTICS": "0"}
    return subprocess.run([str(RERUN), *args], capture_output=True, text=True, timeout=120, env=env)


def test_rrd_verifies_and_lists_the_logged_entities(dataset, tmp_path):
    root, eid = dataset
    path = write_rrd(root, eid, tmp_path / "out" / "episode.rrd")
    assert path.stat().st_size > 100_000
    verified = rerun_cli("rrd", "verify", str(path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    printed = rerun_cli("rrd", "print", "-vv", str(path))  # chunk headers: entities, timelines
    assert printed.returncode == 0, printed.stderr
    found = set(re.findall(r"(/world[\w/]*)", printed.stdout))
    assert {"/" + e for e in ENTITIES} <= found, found
    assert "frame_index" in printed.stdout and "timestamp" in printed.stdout


def test_rrd_of_an_episode_without_samples_is_refused(dataset, tmp_path):
    root, _ = dataset
    with pytest.raises(EpisodeNotFound, match="no samples"):
        write_rrd(root, FAILED_ID, tmp_path / "x.rrd")
    assert not (tmp_path / "x.rrd").exists()
