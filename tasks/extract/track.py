"""Stage 3: follow each keypoint through the episode (classical depth-aware LK, or CoTracker3), chunk by chunk.

The classical tracker is in tasks/extract/lk.py (one batch of points, one direction, frame by frame) and
tasks/extract/progressive.py (chunks, new queries where no visible track covers the patch, stitching with
stable ids); the CoTracker3 backend in tasks/extract/cotracker_track.py. Both read the episode through
`chunks.EpisodeFrames`, `track.chunk_frames` at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tasks.config import IngestConfig, KeypointConfig, TrackConfig
from tasks.extract.chunks import EpisodeFrames, Window
from tasks.extract.lift import lift_points
from tasks.extract.lk import Walk
from tasks.extract.progressive import Seeds, track_progressive
from tasks.stage import Resources, Stage
from tasks.types import Episode


def track_queries(
    gray: np.ndarray,
    depth: np.ndarray,
    K: np.ndarray,
    w2c: np.ndarray,
    q: int,
    uv_q: np.ndarray,
    cfg: TrackConfig,
    flat: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Track pixels `uv_q` (n,2) queried at frame q through the whole video in memory: (uv (n,T,2), visible (n,T)).

    `flat` (n,) marks points on flat texture: LK cannot see them move, so they are followed only
    by geometry (carried with their neighbours, confirmed by depth).
    """
    T = len(gray)
    n = len(uv_q)
    win = Window(0, gray, depth, w2c, K)
    uv = np.full((n, T, 2), np.nan, np.float32)
    vis = np.zeros((n, T), bool)
    X0 = lift_points(uv_q, depth[q], K, w2c[q])
    uv[:, q] = uv_q
    vis[:, q] = np.isfinite(X0).all(1)
    flat = np.zeros(n, bool) if flat is None else flat
    Walk.start(q, 1, uv_q, X0, flat).advance(win, T, cfg, uv, vis)
    Walk.start(q, -1, uv_q, X0, flat).advance(win, -1, cfg, uv, vis)
    return uv, vis


class TrackSettings(NamedTuple):
    track: TrackConfig
    keypoints: KeypointConfig  # how to propose at re-seed frames, and the track budget
    coverage_grid: int  # new queries go only to cells of this grid that no visible track covers


def track(ep: Episode, s: TrackSettings) -> Episode:
    """Track stage 2's seeds, re-seeding every `reseed_every` frames (or at each dino seed's frame) in cells no
    visible track covers, chunk by chunk (docs/method.md#stage-3-tracking).

    Fills query_frame, query_uv, tracks_uv, visible, cluster_id.
    """
    if s.track.backend == "cotracker":  # tasks/extract/cotracker_track.py
        from tasks.extract.cotracker_track import track_cotracker

        return track_cotracker(ep, s)
    seeds = Seeds(ep.seed_uv, ep.seed_flat, ep.seed_frame, ep.seed_entity)
    slack = 0.0 if ep.pose_source == "given" else s.track.estimated_pose_slack_m
    out = track_progressive(EpisodeFrames(ep, pose_slack_m=slack), seeds, s.track, s.keypoints, s.coverage_grid)
    return ep.replace(
        gray=None,  # only the tracker needs it
        seed_uv=None,
        seed_flat=None,
        seed_frame=None,
        seed_entity=None,
        query_frame=out.query_frame,
        query_uv=out.query_uv,
        tracks_uv=out.tracks_uv,
        visible=out.visible,
        cluster_id=out.cluster_id,
    )


class Track(Stage[TrackSettings]):
    """Stage 3 (docs/method.md#stage-3-tracking): depth-aware forward-backward LK, or CoTracker3 (`track.backend`)."""

    name = "track"

    def settings(self, cfg: IngestConfig) -> TrackSettings:
        return TrackSettings(cfg.track, cfg.keypoints, cfg.filter.coverage_grid)

    def warm(self, settings: TrackSettings) -> None:
        if settings.track.backend == "cotracker":  # load the model once per worker
            from tasks.extract.cotracker_track import load

            load(settings.track)

    def resources(self, settings: TrackSettings) -> Resources:
        return Resources(gpus=settings.track.gpus if settings.track.backend == "cotracker" else 0.0)

    def uses_model(self, settings: TrackSettings) -> bool:
        return settings.track.backend == "cotracker"

    def run(self, ep: Episode, settings: TrackSettings) -> Episode:
        return track(ep, settings)
