"""Stage 3 (classical backend): progressive, depth-aware Lucas-Kanade point tracking of stage 2's seeds.

Plain forward-backward LK marks points visible after they slide off flat surfaces or across
occlusions. Here each LK step must also agree in 3D: the lifted point has to land within
`depth_jump_m` of where the track's own world motion predicts it. A point LK loses is carried with
the rigid motion of nearby points that were moving like it (tasks/extract/rigid.py) and counts as seen
again when LK from its last sighting finds it near that guess, or when the observed surface is
within `reacquire_depth_m` of it and it still looks the same; after `max_gap_frames` unseen it is
dropped. Every `reseed_every` frames new queries are seeded in grid cells no visible track covers,
and every query is tracked forwards and backwards. Points on flat texture are followed only as
static world points (their image motion is unobservable) and are dropped near moving textured ones.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from scipy.spatial import cKDTree

from tasks.config import IngestConfig, KeypointConfig, TrackConfig
from tasks.geometry import inside_image, project
from tasks.extract.keypoints import propose, uncovered_mask
from tasks.extract.lift import lift_points, lift_tracks
from tasks.extract.rigid import carry
from tasks.stage import Resources, Stage
from tasks.types import Episode

PATCH = 11
FLAT_STD = 4.0  # grey levels: below this a patch is too flat for NCC


def _lk(gray: np.ndarray, a: int, b: int, p0: np.ndarray, init: np.ndarray, cfg: TrackConfig):
    """LK frame a -> b from p0 (guess `init`), checked back b -> a: (p1, ok, fb_error_px)."""
    prev, cur = gray[a], gray[b]
    kw = dict(
        winSize=(cfg.window_px, cfg.window_px),
        maxLevel=cfg.pyramid_levels,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
        minEigThreshold=cfg.min_texture,
    )
    p0 = np.array(p0, np.float32).reshape(-1, 1, 2)  # copies: OpenCV writes into nextPts in place
    guess = np.array(init, np.float32).reshape(-1, 1, 2)
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, guess, flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
    pb, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, p0.copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
    fb = np.linalg.norm((pb - p0).reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1)
    return p1.reshape(-1, 2), ok, fb


def _patches(gray: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean unit-norm patches (n, PATCH*PATCH) around pixels (n,2) for NCC, and their std (n,)."""
    out = np.stack([cv2.getRectSubPix(gray, (PATCH, PATCH), (float(u), float(v))) for u, v in uv]).astype(np.float32)
    out = out.reshape(len(uv), -1)
    out -= out.mean(1, keepdims=True)
    std = np.sqrt((out**2).mean(1))
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    return out, std


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
    """Track pixels `uv_q` (n,2) queried at frame q through the episode: (uv (n,T,2), visible (n,T)).

    `flat` (n,) marks points on flat texture: LK cannot see them move, so they are followed only
    by geometry (carried with their neighbours, confirmed by depth).
    """
    T, H, W = gray.shape
    n = len(uv_q)
    uv = np.full((n, T, 2), np.nan, np.float32)
    vis = np.zeros((n, T), bool)
    X0 = lift_points(uv_q, depth[q], K, w2c[q])
    uv[:, q] = uv_q
    vis[:, q] = np.isfinite(X0).all(1)
    for step in (1, -1):
        _run(gray, depth, K, w2c, q, step, uv_q, X0, cfg, uv, vis, np.zeros(n, bool) if flat is None else flat)
    return uv, vis


def _run(gray, depth, K, w2c, q, step, uv_q, X0, cfg: TrackConfig, uv, vis, flat) -> None:
    T, H, W = gray.shape
    n = len(uv_q)
    p = uv_q.astype(np.float32).copy()
    X = X0.astype(np.float64).copy()  # last seen world point, or where the body carried it since
    V = np.zeros((n, 3))
    lost = np.zeros(n, np.int64)  # frames since last seen; 0 = seen in the previous frame
    dead = ~np.isfinite(X).all(1)
    templates = np.zeros((n, PATCH * PATCH), np.float32)
    textured = np.zeros(n, bool)  # flat templates make NCC meaningless; depth alone decides there
    last_frame = np.full(n, q)  # where each point was last seen, for re-acquisition by LK
    prev = q
    for s in range(q + step, T if step > 0 else -1, step):
        seen = np.zeros(n, bool)
        Xn = np.full((n, 3), np.nan)

        act = np.flatnonzero((lost == 0) & ~dead & ~flat)
        if act.size:
            Xp = X[act] + V[act]
            proj = project(Xp, K, w2c[s])
            ok_proj = np.isfinite(proj).all(1) & (proj[:, 2] > 0) & inside_image(proj[:, :2], W, H)
            init = np.where(ok_proj[:, None], proj[:, :2], p[act])
            p1, ok, fb = _lk(gray, prev, s, p[act], init, cfg)
            X1 = lift_points(p1, depth[s], K, w2c[s])
            jump = np.linalg.norm(X1 - Xp, axis=1)
            good = ok & (fb < cfg.fb_max_px) & (jump < cfg.depth_jump_m) & inside_image(p1, W, H) & np.isfinite(jump)
            if cfg.rigid_tol_m > 0 and good.sum() > 3:  # must move like the neighbours that moved like it
                g = np.flatnonzero(good)
                pred, used = carry(X[act[g]], X[act[g]], X1[g], V[act[g]], V[act[g]], exclude_self=True)
                off = (used >= 3) & (np.linalg.norm(pred - X1[g], axis=1) > cfg.rigid_tol_m)
                good[g[off]] = False
            seen[act[good]] = True
            p[act[good]] = p1[good]
            Xn[act[good]] = X1[good]
            newly_lost = act[~good]
            if newly_lost.size:  # remember how the point looked when last seen
                templates[newly_lost], std = _patches(gray[prev], p[newly_lost])
                textured[newly_lost] = std > FLAT_STD

        # Points not followed by LK move with their visible neighbours, then must be confirmed
        # by depth (and look) before they count as visible again.
        rest = np.flatnonzero(~seen & ~dead)
        if rest.size:
            anchors = np.flatnonzero(seen)
            moves = rest[~flat[rest]]  # flat points stay put: only a static one can be confirmed
            X[moves], _ = carry(X[moves], X[anchors], Xn[anchors], V[moves], V[anchors])
            proj = project(X[rest], K, w2c[s])
            in_view = np.isfinite(proj).all(1) & (proj[:, 2] > 0) & inside_image(proj[:, :2], W, H)
            c, pc = rest[in_view], proj[in_view, :2]
            obs = lift_points(pc, depth[s], K, w2c[s])
            gap = np.linalg.norm(obs - X[c], axis=1)
            plausible = gap < cfg.depth_jump_m  # hidden points (surface far off the guess) are skipped
            c, pc, obs, gap = c[plausible], pc[plausible], obs[plausible], gap[plausible]
            tex = np.flatnonzero(~flat[c])
            if tex.size:  # first by appearance: LK from the last sighting, near the carried guess
                found, pf, Xf = _relocate(gray, depth, K, w2c, s, c[tex], pc[tex], X[c[tex]], p, last_frame, cfg)
                hit = tex[found]
                seen[c[hit]] = True
                p[c[hit]], Xn[c[hit]] = pf[found], Xf[found]
                other = np.ones(len(c), bool)
                other[hit] = False
                c, pc, obs, gap = c[other], pc[other], obs[other], gap[other]
            near = gap < cfg.reacquire_depth_m  # then by geometry: the surface is where the carried point says
            c, pc, obs = c[near], pc[near], obs[near]
            if c.size:
                back = ~textured[c]  # flat template: depth alone decides
                if (~back).any():
                    t = ~back
                    back[t] = (templates[c[t]] * _patches(gray[s], pc[t])[0]).sum(1) > cfg.reacquire_ncc
                c = c[back]
                seen[c] = True
                p[c] = pc[back]
                Xn[c] = obs[back]

        cont = seen & (lost == 0)
        V[cont] = 0.5 * V[cont] + 0.5 * (Xn[cont] - X[cont])
        V[seen & (lost > 0)] = 0.0
        X[seen] = Xn[seen]
        last_frame[seen] = s
        lost[seen] = 0
        lost[~seen] += 1
        dead |= lost > cfg.max_gap_frames
        uv[seen, s] = p[seen]
        vis[seen, s] = True
        prev = s


def _relocate(gray, depth, K, w2c, s, c, guess_uv, guess_X, p, last_frame, cfg: TrackConfig):
    """LK from each point's last sighting to frame s, started at the carried guess.

    Returns (found (n,), uv (n,2), X (n,3)); found needs a clean forward-backward check and a
    lifted point within `depth_jump_m` of the carried one.
    """
    found = np.zeros(len(c), bool)
    uv, X = guess_uv.copy(), np.full((len(c), 3), np.nan)
    for f in np.unique(last_frame[c]):
        m = np.flatnonzero(last_frame[c] == f)
        p1, ok, fb = _lk(gray, f, s, p[c[m]], guess_uv[m], cfg)
        X1 = lift_points(p1, depth[s], K, w2c[s])
        good = ok & (fb < cfg.fb_max_px) & (np.linalg.norm(X1 - guess_X[m], axis=1) < cfg.depth_jump_m)
        found[m[good]] = True
        uv[m[good]], X[m[good]] = p1[good], X1[good]
    return found, uv, X


class TrackSettings(NamedTuple):
    track: TrackConfig
    keypoints: KeypointConfig  # how to propose at re-seed frames, and the track budget
    coverage_grid: int  # new queries go only to cells of this grid that no visible track covers


def track(ep: Episode, s: TrackSettings) -> Episode:
    """Track the first frame's keypoints, re-seeding every `reseed_every` frames in cells no visible track covers.

    Fills query_frame, query_uv, tracks_uv, visible (new queries only where coverage is missing, as in
    docs/method.md#stage-3-tracking).
    """
    if s.track.backend == "cotracker":  # tasks/extract/cotracker_track.py
        from tasks.extract.cotracker_track import track_cotracker

        return track_cotracker(ep, s)
    W, H = ep.image_size
    kcfg, tcfg = s.keypoints, s.track
    gray, depth = ep.gray, ep.clean_depth
    all_uv, all_vis, q_frame, q_uv, all_flat, all_ent = [], [], [], [], [], []
    budget = kcfg.max_points
    seeded = ep.seed_frame is not None  # dino: every seed has its own query frame and entity
    for q in np.unique(ep.seed_frame) if seeded else range(0, ep.n_frames, kcfg.reseed_every):
        at_q = np.concatenate([u[v[:, q], q] for u, v in zip(all_uv, all_vis)]) if all_uv else np.zeros((0, 2))
        free = uncovered_mask(at_q, W, H, s.coverage_grid)  # new queries only where no visible track is
        if seeded:
            mine = np.flatnonzero(ep.seed_frame == q)
            px = np.clip(np.rint(ep.seed_uv[mine]).astype(int), 0, [W - 1, H - 1])
            mine = mine[free[px[:, 1], px[:, 0]]][:budget]
            uv_q, flat, ent = ep.seed_uv[mine], ep.seed_flat[mine], ep.seed_entity[mine]
        elif q == 0:
            uv_q, flat = ep.seed_uv, ep.seed_flat
        else:
            uv_q, flat = propose(gray[q], kcfg, tcfg.window_px, np.isfinite(depth[q]) & free, limit=budget)
        if len(uv_q) == 0:
            continue
        uv, vis = track_queries(gray, depth, ep.K, ep.w2c, int(q), uv_q, tcfg, flat)
        kept = vis.sum(1) >= tcfg.min_visible_frames  # a point LK could not follow is no trace
        uv, vis, uv_q = uv[kept], vis[kept], uv_q[kept]
        all_flat.append(flat[kept])
        all_ent.append(ent[kept] if seeded else np.full(int(kept.sum()), -1, np.int32))  # classical: no entities
        all_uv.append(uv)
        all_vis.append(vis)
        q_frame.append(np.full(len(uv_q), q, np.int32))
        q_uv.append(uv_q)
        budget -= len(uv_q)
        if budget <= 0:
            break
    if not all_uv:
        raise ValueError("no trackable points: every candidate is on flat texture or unknown depth")
    uv, vis, flat = np.concatenate(all_uv), np.concatenate(all_vis), np.concatenate(all_flat)
    qf, quv = np.concatenate(q_frame), np.concatenate(q_uv).astype(np.float32)
    keep = ~flat | ~_near_motion(uv, vis, flat, qf, depth, ep.K, ep.w2c, tcfg)
    return ep.replace(
        gray=None,  # only the tracker needs it
        seed_uv=None,
        seed_flat=None,
        seed_frame=None,
        seed_entity=None,
        query_frame=qf[keep],
        query_uv=quv[keep],
        tracks_uv=uv[keep],
        visible=vis[keep],
        cluster_id=np.concatenate(all_ent)[keep],
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

    def run(self, ep: Episode, settings: TrackSettings) -> Episode:
        return track(ep, settings)


def _near_motion(uv, vis, flat, qf, depth, K, w2c, cfg: TrackConfig) -> np.ndarray:
    """(n,) True for flat points that start within `flat_radius_m` of a textured point that moves.

    A flat point is only followed as a static world point, which is wrong on a moving body; the
    textured tracks around it tell whether its neighbourhood is static.
    """
    N, T = vis.shape
    xyz = lift_tracks(uv, vis, depth, K, w2c)
    ref = xyz[np.arange(N), qf]
    with np.errstate(invalid="ignore"):
        motion = np.nanmax(np.linalg.norm(xyz - ref[:, None], axis=-1), axis=1)
    movers = np.flatnonzero(~flat & (motion > cfg.flat_motion_m))
    out = np.zeros(N, bool)
    if movers.size == 0:
        return out
    for q in np.unique(qf[flat]):
        f = np.flatnonzero(flat & (qf == q))
        m = movers[np.isfinite(xyz[movers, q]).all(1)]
        if m.size:
            d, _ = cKDTree(xyz[m, q]).query(ref[f], k=1)
            out[f] = d < cfg.flat_radius_m
    return out
