"""A coverage rejection names what left the cells empty, and the CLI's closing lines say what to try for it."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from flows.ingest import next_steps
from tasks.config import DecodeConfig, FilterConfig
from tasks.errors import EpisodeInputError
from tasks.extract.motion_filter import TextureSettings, empty_cells, filter_tracks
from tasks.extract.video import check_enough_frames
from tasks.types import Episode, EpisodeSource

W, H, T, G = 320, 240, 6, 16
K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])


def frames(textured_cols: int) -> np.ndarray:
    """(T,H,W,3): random texture in the left `textured_cols` of 16 cell columns, flat grey elsewhere."""
    out = np.full((T, H, W, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (T, H, textured_cols * W // G, 1), dtype=np.uint8)
    out[:, :, : textured_cols * W // G] = noise
    return out


def two_track_episode(rgb: np.ndarray, depth: np.ndarray) -> Episode:
    """Two static tracks (cells (1,1) and (2,2)) over a textured/flat scene: coverage 2/256."""
    uv = np.broadcast_to(np.array([[30.0, 20.0], [50.0, 40.0]], np.float32)[:, None], (2, T, 2)).copy()
    xyz = np.concatenate([(uv - K[:2, 2]) / K[0, 0], np.ones((2, T, 1), np.float32)], -1) * 2.0
    return Episode(
        source=EpisodeSource(uri="mem://cov", episode_id="e"), frames=rgb, depth=depth, K=K,
        w2c=np.tile(np.eye(4), (T, 1, 1)), tracks_uv=uv, visible=np.ones((2, T), bool), tracks_xyz=xyz.astype(np.float32),
    )


def test_empty_cells_split_by_what_the_cell_shows():
    depth = np.full((T, H, W), 2.0, np.float32)
    depth[:, : H // 4] = np.nan  # top 4 of 16 cell rows: no depth (sky); both tracks sit there
    ep = two_track_episode(frames(8), depth)
    cells = empty_cells(ep.tracks_uv, ep.visible, ep.frames, ep.depth, G, TextureSettings())
    assert cells.no_depth == pytest.approx((64 - 2) / 256)
    # below the sky, 12 rows: 8 textured cell columns on the left, 8 flat ones on the right, give or take the flat
    # column next to the texture (LK's window reaches into it)
    assert cells.lost == pytest.approx(12 * 8 / 256, abs=12 / 256)
    assert cells.flat == pytest.approx(12 * 8 / 256, abs=12 / 256)
    assert cells.no_depth + cells.flat + cells.lost == pytest.approx(254 / 256)


def test_rejection_of_a_flat_video_says_little_texture_and_the_cli_does_not_advise_a_lower_threshold():
    ep = filter_tracks(two_track_episode(frames(0), np.full((T, H, W), 2.0, np.float32)), FilterConfig())
    msg = ep.errors["filter"]
    assert ep.status == "rejected" and "the video has little texture" in msg and "99% is below the texture" in msg, msg
    [step] = next_steps([f"filter: {msg}"])
    assert step.startswith("textureless video (1): ") and "--depth given --pose given" in step
    assert "--set filter.min_track_coverage" not in step


def test_rejection_of_a_textured_video_without_tracks_says_tracks_were_lost():
    ep = filter_tracks(two_track_episode(frames(16), np.full((T, H, W), 2.0, np.float32)), FilterConfig())
    assert "tracks were lost" in ep.errors["filter"] and "99% is textured with depth" in ep.errors["filter"]
    [step] = next_steps([f"filter: {ep.errors['filter']}"])
    assert step.startswith("tracks lost (1): ") and "decode.target_fps" in step


def test_cells_without_depth_are_the_cause_only_when_they_alone_keep_coverage_low():
    depth = np.full((T, H, W), 2.0, np.float32)
    depth[:, : H * 5 // 16] = np.nan  # 5 of 16 cell rows (31%): even full tracks elsewhere would reach 0.69
    msg = filter_tracks(two_track_episode(frames(0), depth), FilterConfig()).errors["filter"]
    # 80 cells without depth less the 2 holding the tracks: 78/256 = 30%
    assert "the video has little texture" in msg and "30% of the image has no usable depth" in msg, msg


def test_rejection_where_depth_is_missing_says_so():
    ep = filter_tracks(two_track_episode(frames(16), np.full((T, H, W), np.nan, np.float32)), FilterConfig())
    assert "no usable depth" in ep.errors["filter"], ep.errors
    assert next_steps([f"filter: {ep.errors['filter']}"])[0].startswith("no depth (1): ")


def test_too_few_frames_is_named_and_the_advice_points_at_the_frame_rate():
    with pytest.raises(EpisodeInputError) as exc:
        check_enough_frames("clip.mp4", 30, 30.0, DecodeConfig(target_fps=5.0), min_frames=10)
    assert "--set decode.target_fps=" in str(exc.value)
    steps = next_steps([f"decode: {exc.value}", f"decode: {exc.value}", "track: something nobody recognises"])
    assert steps == [steps[0]] and steps[0].startswith("too few frames (2): keep more frames")


def sliding_texture() -> np.ndarray:
    """(T,H,W,3): one smooth random texture sliding 1 px right per frame, which plain LK follows."""
    base = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (H, W + T), dtype=np.uint8), (5, 5), 1.5)
    return np.stack([np.repeat(base[:, T - t : T - t + W, None], 3, -1) for t in range(T)])


def test_rejection_where_depth_flickers_says_the_depth_disagrees_not_that_tracks_were_lost():
    """Real clips with a random depth model: LK follows the image, the 3D check drops every step (issue 18)."""
    flicker = np.where(np.arange(T) % 2, 2.1, 1.9).astype(np.float32)[:, None, None]  # +-10 cm every other frame
    ep = filter_tracks(two_track_episode(sliding_texture(), np.broadcast_to(flicker, (T, H, W)).copy()), FilterConfig())
    msg = ep.errors["filter"]
    jump = float(re.search(r"jump ([\d.]+) cm in 3D", msg).group(1))
    assert ep.status == "rejected" and "the depth disagrees with the image motion" in msg, msg
    assert 20 <= jump <= 24, msg  # 20 cm along viewing rays 1 to 1.2 long
    assert "track.depth_jump_m=0.02 m" in msg and "tracks were lost" not in msg
    [step] = next_steps([f"filter: {msg}"])
    assert step.startswith("depth inconsistent (1): ") and "--depth-model" in step


def test_consistent_depth_keeps_the_tracks_lost_cause():
    ep = filter_tracks(two_track_episode(sliding_texture(), np.full((T, H, W), 2.0, np.float32)), FilterConfig())
    assert "tracks were lost" in ep.errors["filter"], ep.errors  # followed points move 0.7 cm per frame: under 2 cm
