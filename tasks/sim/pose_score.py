"""Grade estimated camera poses (and the tracks lifted with them) against simulator ground truth.

The estimate's world is camera 0; it is mapped into the ground-truth world by the true w2c of
frame 0 (w2c_est @ w2c_gt[0]), not by a best fit, so any error at frame 0 or drift is counted.
ATE is the RMS camera-centre error in cm; rotation error the mean angle in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tasks.config import IngestConfig
from tasks.geometry import camera_centers
from tasks.run.episode import STAGES, run_stages, stages_until
from tasks.sim.ground_truth import load_ground_truth
from tasks.sim.score import TrackScore, score_tracks
from tasks.types import Episode, EpisodeSource


@dataclass(frozen=True)
class PoseScore:
    ate_cm: float
    rot_mean_deg: float
    rot_max_deg: float


def true_w2c(ep: Episode) -> np.ndarray:
    """Ground-truth w2c (T, 4, 4) of the stored frames of a simulated episode."""
    return np.load(f"{ep.source.uri}/cameras.npz")["w2c"][ep.frame_index]


def in_true_world(w2c_est: np.ndarray, w2c_gt: np.ndarray) -> np.ndarray:
    """Estimated w2c (world = camera 0) re-expressed in the ground-truth world."""
    return w2c_est @ w2c_gt[0]


def pose_errors(w2c_est: np.ndarray, w2c_gt: np.ndarray) -> PoseScore:
    w2c = in_true_world(w2c_est, w2c_gt)
    err = np.linalg.norm(camera_centers(w2c) - camera_centers(w2c_gt), axis=1)
    ang = np.degrees(Rotation.from_matrix(w2c[:, :3, :3] @ np.swapaxes(w2c_gt[:, :3, :3], 1, 2)).magnitude())
    return PoseScore(float(np.sqrt((err**2).mean()) * 100), float(ang.mean()), float(ang.max()))


def grade_estimated(src: EpisodeSource, cfg: IngestConfig) -> tuple[Episode, PoseScore, TrackScore]:
    """decode -> depth -> pose (estimated) -> track -> lift, with the tracks scored in the true world."""
    ep = run_stages(src, cfg, stages_until("pose"))
    if ep.status != "ok":
        raise RuntimeError(f"{src.uri}: {ep.errors}")
    gt = true_w2c(ep)
    pose = pose_errors(ep.w2c, gt)
    ep = ep.replace(w2c=in_true_world(ep.w2c, gt))  # the same poses, written in the ground-truth world
    for stage in STAGES[len(stages_until("pose")) : len(stages_until("lift"))]:  # keypoints, track, lift
        ep = stage.run(ep, stage.settings(cfg))
    gtruth = load_ground_truth(src.uri, ep.frame_index)
    return ep, pose, score_tracks(gtruth, ep.query_frame, ep.query_uv, ep.tracks_xyz, ep.visible)
