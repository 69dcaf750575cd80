"""Grade extracted tracks against simulator ground truth, in centimetres.

Every track is scored against the true trajectory of its own query pixel. Errors are measured over
the (track, frame) pairs the pipeline marks visible; coverage is the share of truly visible pairs
that the pipeline also marks visible. The moving pairs it misses are split by where they fall in their
track, which says why: after its last sighting (lost and never found again), before its first (a later
query walking back did not reach them), or in between (unseen for a while, then found again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tasks.config import IngestConfig
from tasks.run.episode import run_stages, stages_until
from tasks.sim.ground_truth import GroundTruth, load_ground_truth
from tasks.types import Episode, EpisodeSource


@dataclass(frozen=True)
class TrackScore:
    n_tracks: int
    n_moving: int
    moving_median_cm: float
    moving_p90_cm: float
    moving_coverage: float  # of truly visible (track, frame) pairs of moving-body tracks
    coverage: float  # same over all tracks
    static_median_cm: float
    static_drift_median_cm: float  # per static-body track: world-space std over its visible frames
    false_visible: float  # share of pairs marked visible that are truly occluded or off-screen
    moving_missed_after: float  # shares of truly visible moving pairs missed after the track's last sighting,
    moving_missed_before: float  # before its first,
    moving_missed_between: float  # and in between
    moving_missed_body: str  # the body with the most missed moving pairs ("" when none is missed)

    def as_dict(self) -> dict:
        return asdict(self)


def true_tracks(gt: GroundTruth, query_frame: np.ndarray, query_uv: np.ndarray):
    """Ground-truth (xyz (N,T,3), visible (N,T), body (N,)) for each track's query pixel."""
    N, T = len(query_frame), gt.depth.shape[0]
    xyz = np.full((N, T, 3), np.nan)
    vis = np.zeros((N, T), bool)
    body = np.full(N, -1, np.int64)
    for q in np.unique(query_frame):
        idx = np.flatnonzero(query_frame == q)
        xyz[idx], vis[idx], body[idx] = gt.trajectory(int(q), query_uv[idx])
    return xyz, vis, body


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q) * 100) if x.size else float("nan")


def score_tracks(
    gt: GroundTruth, query_frame: np.ndarray, query_uv: np.ndarray, xyz: np.ndarray, visible: np.ndarray
) -> TrackScore:
    gxyz, gvis, body = true_tracks(gt, query_frame, query_uv)
    on_body = body >= 0
    moving = on_body & gt.is_moving_body(np.maximum(body, 0))
    static = on_body & ~moving
    pred = visible & np.isfinite(xyz).all(-1) & on_body[:, None]
    err = np.linalg.norm(xyz - gxyz, axis=-1)
    m_err = err[pred & moving[:, None]]
    s_err = err[pred & static[:, None]]
    drift = []
    for i in np.flatnonzero(static):
        pts = xyz[i, pred[i]]
        if len(pts) >= 2:
            drift.append(np.sqrt(pts.var(0).sum()))
    truly = gvis & on_body[:, None]
    cov = (pred & truly).sum() / max(1, truly.sum())
    m_truly = truly & moving[:, None]
    m_cov = (pred & m_truly).sum() / max(1, m_truly.sum())
    missed = _missed_moving(pred, m_truly, body, gt.body_names)
    return TrackScore(
        n_tracks=int(len(query_frame)),
        n_moving=int(moving.sum()),
        moving_median_cm=_pct(m_err, 50),
        moving_p90_cm=_pct(m_err, 90),
        moving_coverage=float(m_cov),
        coverage=float(cov),
        static_median_cm=_pct(s_err, 50),
        static_drift_median_cm=_pct(np.asarray(drift), 50),
        false_visible=float((pred & ~gvis).sum() / max(1, pred.sum())),
        **missed,
    )


def _missed_moving(pred: np.ndarray, m_truly: np.ndarray, body: np.ndarray, body_names: np.ndarray) -> dict:
    """Truly visible moving pairs the pipeline misses, as shares of all of them, by where they fall in their track."""
    miss = m_truly & ~pred
    T = pred.shape[1]
    seen = pred.any(1)
    first = np.where(seen, pred.argmax(1), T)[:, None]
    last = np.where(seen, T - 1 - pred[:, ::-1].argmax(1), -1)[:, None]
    t = np.arange(T)[None]
    after, before = miss & (t > last), miss & (t < first) & (t <= last)
    n = max(1, int(m_truly.sum()))
    per_body = np.bincount(np.maximum(body, 0), weights=miss.sum(1) * (body >= 0), minlength=len(body_names))
    name = str(body_names[int(per_body.argmax())]) if miss.any() and len(body_names) else ""
    return dict(moving_missed_after=float(after.sum() / n), moving_missed_before=float(before.sum() / n),
                moving_missed_between=float((miss & ~after & ~before).sum() / n), moving_missed_body=name)


def grade_episode(src: EpisodeSource, cfg: IngestConfig) -> tuple[Episode, TrackScore]:
    """Run decode -> keypoints -> track -> lift on a simulated episode and score its tracks against its ground truth."""
    ep = run_stages(src, cfg, stages_until("lift"))
    if ep.status != "ok":
        raise RuntimeError(f"{src.uri}: {ep.errors}")
    gt = load_ground_truth(src.uri, ep.frame_index)
    return ep, score_tracks(gt, ep.query_frame, ep.query_uv, ep.tracks_xyz, ep.visible)

