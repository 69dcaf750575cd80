"""`decode.max_frames` never cuts an episode silently: the episode row's errors say where it was cut (status "ok")."""

from __future__ import annotations

import json

import cv2
import numpy as np

from tasks.config import DecodeConfig, get_preset, with_overrides
from tasks.extract.decode import decode
from tasks.extract.rows import episode_row
from tasks.types import EpisodeSource
from tests.tasks.extract.videos import write_video


def test_a_video_longer_than_max_frames_says_where_it_was_cut(tmp_path):
    path = write_video(tmp_path / "long.mp4", n=12)
    cfg = with_overrides(get_preset("generic"), {"decode.max_frames": 5, "decode.target_fps": 5})  # 10 fps: 1 in 2
    ep = decode(EpisodeSource(uri=str(path), episode_id="long", kind="video"), cfg.decode, 2, cfg.lerobot)
    assert ep.n_frames == 5 and ep.frame_index.tolist() == [0, 2, 4, 6, 8]
    note = "long.mp4: cut at decode.max_frames=5: stored frames 0-4 (source frames 0-8) kept of 6 (12 source frames)"
    assert note in ep.errors["decode_note"]
    row = episode_row(ep, cfg).to_pylist()[0]
    assert row["status"] == "ok" and note in json.loads(row["errors"])["decode_note"]


def test_frames_within_max_frames_leave_no_note(tmp_path):
    path = write_video(tmp_path / "short.mp4", n=12)
    ep = decode(EpisodeSource(uri=str(path), episode_id="short", kind="video"), DecodeConfig(max_frames=12), 2)
    assert ep.n_frames == 12 and "decode_note" not in ep.errors


def test_a_frame_directory_longer_than_max_frames_says_so(tmp_path):
    ep_dir = tmp_path / "ep"
    (ep_dir / "frames").mkdir(parents=True)
    for i in range(7):
        cv2.imwrite(str(ep_dir / "frames" / f"{i:04d}.png"), np.full((24, 32, 3), 20 * i, np.uint8))
    (ep_dir / "meta.json").write_text(json.dumps({"fps": 10}))
    ep = decode(EpisodeSource(uri=str(ep_dir), episode_id="dir"), DecodeConfig(max_frames=4), 2)
    assert ep.n_frames == 4
    note = "frames: cut at decode.max_frames=4: stored frames 0-3 (source frames 0-3) kept of 7"
    assert note in ep.errors["decode_note"]
