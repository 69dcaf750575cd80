"""Stages 2-3 (classical backend): progressive, depth-aware Lucas-Kanade point tracking.

Plain forward-backward LK marks points visible after they slide off flat surfaces or across
occlusions. Each step here must also agree in 3D: the lifted point has to land within
`depth_jump_m` of where the track's own world motion predicts it. A lost track is re-acquired
when its predicted world point is back in view at the right depth and looks like it did when it
was last seen (static points wait as long as needed; moving ones `max_gap_frames`). Every
`reseed_every` frames new queries are seeded in grid cells no visible track covers, and every
query is tracked forwards and backwards so each track spans the whole episode.
"""

from __future__ import annotations

import cv2
import numpy as np

from tasks.config import IngestConfig, TrackConfig
from tasks.geometry import inside_image, project
from tasks.keypoints import propose, uncovered_mask
from tasks.lift import filter_depth_edges, lift_points
from tasks.types import Episode

PATCH = 11
STATIC_SPEED_M = 0.001  # per frame: slower tracks are treated as static (may wait out any occlusion)


def _lk(prev: np.ndarray, cur: np.ndarray, p0: np.ndarray, init: np.ndarray, cfg: TrackConfig):
    """LK prev->cur from p0 (guess `init`), checked back cur->prev: (p1, ok, fb_error_px)."""
    kw = dict(
        winSize=(cfg.window_px, cfg.window_px),
        maxLevel=cfg.pyramid_levels,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
        minEigThreshold=cfg.min_texture,
    )
    p0 = np.ascontiguousarray(p0, np.float32).reshape(-1, 1, 2)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(
        prev, cur, p0, np.ascontiguousarray(init, np.float32).reshape(-1, 1, 2), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw
    )
    pb, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, p0.copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
    fb = np.linalg.norm((pb - p0).reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1)
    return p1.reshape(-1, 2), ok, fb


def _patches(gray: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(n, PATCH*PATCH) zero-mean unit-norm patches around pixels (n,2), for NCC."""
    out = np.stack([cv2.getRectSubPix(gray, (PATCH, PATCH), (float(u), float(v))) for u, v in uv]).astype(np.float32)
    out = out.reshape(len(uv), -1)
    out -= out.mean(1, keepdims=True)
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    return out


def track_queries(
    gray: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, q: int, uv_q: np.ndarray, cfg: TrackConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Track pixels `uv_q` (n,2) queried at frame q through the episode: (uv (n,T,2), visible (n,T))."""
    T, H, W = gray.shape
    n = len(uv_q)
    uv = np.full((n, T, 2), np.nan, np.float32)
    vis = np.zeros((n, T), bool)
    X0 = lift_points(uv_q, depth[q], K, w2c[q])
    uv[:, q] = uv_q
    vis[:, q] = np.isfinite(X0).all(1)
    for step in (1, -1):
        _run(gray, depth, K, w2c, q, step, uv_q, X0, cfg, uv, vis)
    return uv, vis


def _run(gray, depth, K, w2c, q, step, uv_q, X0, cfg: TrackConfig, uv, vis) -> None:
    T, H, W = gray.shape
    n = len(uv_q)
    p = uv_q.astype(np.float32).copy()
    X = X0.astype(np.float64).copy()
    V = np.zeros((n, 3))
    lost = np.zeros(n, np.int64)  # frames since last seen; 0 = seen in the previous frame
    dead = ~np.isfinite(X).all(1)
    templates = np.zeros((n, PATCH * PATCH), np.float32)
    prev = q
    for s in range(q + step, T if step > 0 else -1, step):
        Xp = X + V * (lost + 1)[:, None]
        proj = project(Xp, K, w2c[s])
        in_view = np.isfinite(proj).all(1) & (proj[:, 2] > 0) & inside_image(proj[:, :2], W, H)
        seen = np.zeros(n, bool)
        Xn = np.full((n, 3), np.nan)

        act = np.flatnonzero((lost == 0) & ~dead)
        if act.size:
            init = np.where(in_view[act, None], proj[act, :2], p[act])
            p1, ok, fb = _lk(gray[prev], gray[s], p[act], init, cfg)
            X1 = lift_points(p1, depth[s], K, w2c[s])
            jump = np.linalg.norm(X1 - Xp[act], axis=1)
            good = ok & (fb < cfg.fb_max_px) & (jump < cfg.depth_jump_m) & inside_image(p1, W, H)
            good &= np.isfinite(jump)
            seen[act[good]] = True
            p[act[good]] = p1[good]
            Xn[act[good]] = X1[good]
            newly_lost = act[~good]
            if newly_lost.size:  # remember how the point looked when last seen
                templates[newly_lost] = _patches(gray[prev], p[newly_lost])

        cand = np.flatnonzero((lost > 0) & ~dead & in_view)
        if cand.size:
            z_obs = lift_points(proj[cand, :2], depth[s], K, w2c[s])
            jump = np.linalg.norm(z_obs - Xp[cand], axis=1)
            near = np.isfinite(jump) & (jump < cfg.depth_jump_m)
            if near.any():
                c = cand[near]
                ncc = (templates[c] * _patches(gray[s], proj[c, :2])).sum(1)
                back = ncc > cfg.reacquire_ncc
                c = c[back]
                seen[c] = True
                p[c] = proj[c, :2]
                Xn[c] = z_obs[near][back]

        moved = seen & (lost == 0)
        V[moved] = 0.5 * V[moved] + 0.5 * (Xn[moved] - X[moved])
        V[seen & (lost > 0)] = 0.0
        X[seen] = Xn[seen]
        lost[seen] = 0
        lost[~seen] += 1
        speed = np.linalg.norm(V, axis=1)
        dead |= (lost > cfg.max_gap_frames) & (speed > STATIC_SPEED_M)
        uv[seen, s] = p[seen]
        vis[seen, s] = True
        prev = s


def track(ep: Episode, cfg: IngestConfig) -> Episode:
    """Seed, track and re-seed; fills query_frame, query_uv, tracks_uv, visible, cluster_id."""
    T = ep.n_frames
    W, H = ep.image_size
    kcfg, tcfg = cfg.keypoints, cfg.track
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in ep.frames])
    depth = filter_depth_edges(ep.depth, cfg.lift.edge_rel_jump, cfg.lift.edge_kernel_px)
    all_uv, all_vis, q_frame, q_uv = [], [], [], []
    budget = kcfg.max_points
    for q in range(0, T, kcfg.reseed_every):
        allowed = np.isfinite(depth[q])
        if all_uv:
            at_q = np.concatenate([u[v[:, q], q] for u, v in zip(all_uv, all_vis)])
            allowed &= uncovered_mask(at_q, W, H, cfg.filter.coverage_grid)
        uv_q = propose(gray[q], kcfg, tcfg.window_px, allowed, limit=budget)
        if len(uv_q) == 0:
            continue
        uv, vis = track_queries(gray, depth, ep.K, ep.w2c, q, uv_q, tcfg)
        all_uv.append(uv)
        all_vis.append(vis)
        q_frame.append(np.full(len(uv_q), q, np.int32))
        q_uv.append(uv_q)
        budget -= len(uv_q)
        if budget <= 0:
            break
    if not all_uv:
        raise ValueError("no trackable points: every candidate is on flat texture or unknown depth")
    n = sum(len(x) for x in q_uv)
    return ep.replace(
        query_frame=np.concatenate(q_frame),
        query_uv=np.concatenate(q_uv).astype(np.float32),
        tracks_uv=np.concatenate(all_uv),
        visible=np.concatenate(all_vis),
        cluster_id=np.full(n, -1, np.int32),  # no entity clustering in the classical backend
    )
