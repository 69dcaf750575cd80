"""Stage 3 (CoTracker3 backend): track stage 2's seeds with CoTracker3, checked against depth.

Queries are per-keypoint (t, x, y): with the dino keypoint backend every seed is queried from its
own frame. With the classical one, frame 0's seeds are tracked first; then at every `reseed_every`
frame `propose` seeds new points in grid cells no visible first-pass track covers, and those are
tracked in one second pass (two CoTracker passes instead of the LK path's one per re-seed frame, so
a cell uncovered at several re-seed frames may be seeded at each of them; `max_points` caps all).

Every query is tracked forwards and, on the time-reversed video, backwards. The offline model sees
windows of `window` frames that share `overlap` frames; a track is handed on to the next window at
its last visible frame inside the overlap (a track unseen throughout an overlap ends there). The
online model streams its own 16-frame window. Either way memory is bounded by the window.

CoTracker's visibility is kept and combined with the classical tracker's 3D check: walking away from
the query frame, a visible step must lift (on the edge-filtered depth) to within `depth_jump_m` of
where the track's own world motion predicts it; unknown depth is not visible; after a gap the check
restarts from CoTracker's re-detection, and a track unseen for more than `max_gap_frames` ends.
Tracks seen in fewer than `min_visible_frames` frames are dropped. Flat-texture seeds are tracked
like the others (CoTracker does not rely on local texture), so the LK path's flat-point rules do not
apply. `cluster_id` is the DINO entity with the dino backend, -1 otherwise (as in the LK path).
"""

from __future__ import annotations

import numpy as np
import torch

from models.cotracker import CoTracker, load_cotracker
from tasks.errors import ConfigurationError
from tasks.extract.keypoints import propose, uncovered_mask
from tasks.extract.lift import lift_tracks
from tasks.types import Episode


def load(tcfg) -> CoTracker:
    """The cached predictor the track settings name."""
    if tcfg.cotracker_model == "cotracker3_offline" and tcfg.overlap >= tcfg.window:
        raise ConfigurationError(f"track.overlap ({tcfg.overlap}) must be smaller than track.window ({tcfg.window})")
    return load_cotracker(tcfg.cotracker_repo, tcfg.cotracker_model, tcfg.weights, tcfg.device)


def track_cotracker(ep: Episode, s) -> Episode:
    """query_frame, query_uv, tracks_uv (N,T,2), visible (N,T), cluster_id from the seeds (s: track.TrackSettings)."""
    kcfg, tcfg = s.keypoints, s.track
    model = load(tcfg)
    W, H = ep.image_size
    depth = ep.clean_depth
    video = torch.from_numpy(ep.frames).permute(0, 3, 1, 2)  # (T,3,H,W) uint8, moved per window
    if ep.seed_frame is not None:  # dino: every seed from its own frame, with its entity
        qf, quv, ent = ep.seed_frame.astype(np.int64), ep.seed_uv, ep.seed_entity
        order = np.argsort(qf, kind="stable")[: kcfg.max_points]
        uv, vis = track_points(model, video, qf[order], quv[order], depth, ep.K, ep.w2c, tcfg)
        qf, quv, ent = qf[order], quv[order], ent[order]
    else:
        quv = ep.seed_uv[: kcfg.max_points]
        qf = np.zeros(len(quv), np.int64)
        uv, vis = track_points(model, video, qf, quv, depth, ep.K, ep.w2c, tcfg)
        new_f, new_uv = _reseed(ep.gray, depth, uv, vis, kcfg, tcfg, s.coverage_grid, kcfg.max_points - len(quv), W, H)
        if len(new_uv):
            uv2, vis2 = track_points(model, video, new_f, new_uv, depth, ep.K, ep.w2c, tcfg)
            qf, quv = np.concatenate([qf, new_f]), np.concatenate([quv, new_uv])
            uv, vis = np.concatenate([uv, uv2]), np.concatenate([vis, vis2])
        ent = np.full(len(qf), -1, np.int32)
    kept = vis.sum(1) >= tcfg.min_visible_frames
    if not kept.any():
        raise ValueError("no trackable points: no CoTracker track stays visible (and depth-consistent) long enough")
    return ep.replace(
        gray=None, seed_uv=None, seed_flat=None, seed_frame=None, seed_entity=None,
        query_frame=qf[kept].astype(np.int32),
        query_uv=np.asarray(quv, np.float32)[kept],
        tracks_uv=uv[kept],
        visible=vis[kept],
        cluster_id=np.asarray(ent, np.int32)[kept],
    )


def _reseed(gray, depth, uv, vis, kcfg, tcfg, grid, budget, W, H):
    """New queries at every `reseed_every` frame, in cells no visible first-pass track covers."""
    frames, points = [], []
    for q in range(kcfg.reseed_every, len(gray), kcfg.reseed_every):
        if budget <= 0:
            break
        free = uncovered_mask(uv[vis[:, q], q], W, H, grid)
        new, _ = propose(gray[q], kcfg, tcfg.window_px, np.isfinite(depth[q]) & free, limit=budget)
        frames.append(np.full(len(new), q, np.int64))
        points.append(new)
        budget -= len(new)
    if not points:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    return np.concatenate(frames), np.concatenate(points).astype(np.float32)


def track_points(model: CoTracker, video, qf, quv, depth, K, w2c, tcfg):
    """Queries (t, x, y) = (qf (n,), quv (n,2)) through video (T,3,H,W): (uv (n,T,2) float32, visible (n,T)).

    Forward from each query frame and backward on the reversed video; CoTracker's visibility is then
    narrowed by the 3D check (`depth_consistent`); uv is NaN where not visible, except at the query frame,
    which holds the query pixel (visible where its depth is known).
    """
    T = video.shape[0]
    n = len(qf)
    uv = np.full((n, T, 2), np.nan, np.float32)
    vis = np.zeros((n, T), bool)
    if n == 0:
        return uv, vis
    if (qf < T - 1).any():
        fu, fv = _one_way(model, video, qf, quv, tcfg)
        after = np.arange(T)[None] >= qf[:, None]
        uv[after], vis[after] = fu[after], fv[after]
    if (qf > 0).any():
        bu, bv = _one_way(model, video.flip(0), T - 1 - qf, quv, tcfg)
        before = np.arange(T)[None] < qf[:, None]
        uv[before], vis[before] = bu[:, ::-1][before], bv[:, ::-1][before]
    rows = np.arange(n)
    uv[rows, qf] = quv
    vis[rows, qf] = True
    vis = depth_consistent(uv, vis, qf, depth, K, w2c, tcfg)
    uv[~vis] = np.nan  # as in the LK path: positions only where seen (CoTracker's guesses behind occluders are not kept)
    uv[rows, qf] = quv
    return uv, vis


def depth_consistent(uv, vis, qf, depth, K, w2c, tcfg) -> np.ndarray:
    """visible (n,T) narrowed to steps whose lifted point agrees with the track's own 3D motion.

    The same test as the LK path's: the world point must land within `depth_jump_m` of the last
    one plus its smoothed velocity; unknown depth is not visible; after a gap only the depth must be
    known (velocity restarts); more than `max_gap_frames` unseen ends the track in that direction.
    """
    n, T = vis.shape
    xyz = lift_tracks(uv, vis, depth, K, w2c)
    ok = np.zeros_like(vis)
    rows = np.arange(n)
    ok[rows, qf] = vis[rows, qf] & np.isfinite(xyz[rows, qf]).all(1)
    for step in (1, -1):
        X = xyz[rows, qf].copy()
        V = np.zeros((n, 3))
        lost = np.where(ok[rows, qf], 0, tcfg.max_gap_frames + 1)  # a query on unknown depth starts dead
        for d in range(1, T):
            s = qf + step * d
            live = (s >= 0) & (s < T) & (lost <= tcfg.max_gap_frames)
            if not live.any():
                break
            r, f = rows[live], s[live]
            X1 = xyz[r, f]
            known = vis[r, f] & np.isfinite(X1).all(1)
            cont = lost[r] == 0
            with np.errstate(invalid="ignore"):
                jump = np.linalg.norm(X1 - (X[r] + V[r]), axis=1)
            good = known & (~cont | (jump < tcfg.depth_jump_m))
            g = r[good]
            c = good & cont
            V[r[c]] = 0.5 * V[r[c]] + 0.5 * (X1[c] - X[r[c]])
            V[r[good & ~cont]] = 0.0
            X[g] = X1[good]
            ok[g, f[good]] = True
            lost[g] = 0
            lost[r[~good]] += 1
    return ok


def _one_way(model: CoTracker, video, qf, quv, tcfg):
    """Forward-only tracks from each query frame on: (uv (n,T,2), vis (n,T)); frames before qf are meaningless."""
    if model.online:
        return _online(model, video, qf, quv)
    return _windows(model, video, qf, quv, tcfg.window, tcfg.overlap)


def _run_window(model: CoTracker, frames, t_local, xy):
    """The offline predictor on frames (L,3,H,W) uint8 with queries (t_local (m,), xy (m,2)): numpy (m,L,2), (m,L)."""
    q = torch.from_numpy(np.concatenate([t_local[:, None], xy], 1).astype(np.float32))[None].to(model.device)
    with torch.inference_mode(), model.autocast():
        tr, vi = model.predictor(frames[None].to(model.device).float(), queries=q, backward_tracking=False)
    return tr[0].float().permute(1, 0, 2).cpu().numpy(), vi[0].permute(1, 0).cpu().numpy()


def _windows(model: CoTracker, video, qf, quv, window: int, overlap: int):
    """Offline windows [a, a+window) every `window - overlap` frames; tracks are handed on inside the overlap."""
    T = video.shape[0]
    n = len(qf)
    uv = np.full((n, T, 2), np.nan, np.float32)
    vis = np.zeros((n, T), bool)
    hand_t, hand_uv = qf.astype(np.int64).copy(), np.asarray(quv, np.float32).copy()
    alive = np.ones(n, bool)
    stride = window - overlap
    a = int(qf.min()) if n else T
    while a < T - 1:
        b = min(a + window, T)
        m = np.flatnonzero(alive & (hand_t >= a) & (hand_t < b))
        if m.size:
            tr, vi = _run_window(model, video[a:b], hand_t[m] - a, hand_uv[m])
            for j, i in enumerate(m):
                f0 = hand_t[i] - a
                uv[i, hand_t[i] : b] = tr[j, f0:]
                vis[i, hand_t[i] : b] = vi[j, f0:]
            if b < T:  # hand on at the last visible frame in the next window's part of this one
                nxt = a + stride
                for j, i in enumerate(m):
                    lo = max(nxt, hand_t[i]) - a
                    seen = np.flatnonzero(vi[j, lo:])
                    if seen.size:
                        h = lo + seen[-1]
                        hand_t[i], hand_uv[i] = a + h, tr[j, h]
                    else:
                        alive[i] = False
        if b >= T:
            break
        a += stride
    return uv, vis


def _online(model: CoTracker, video, qf, quv):
    """The online predictor streamed over the video as upstream's online demo does (steps of window/2 frames)."""
    pred = model.predictor
    T = video.shape[0]
    step = pred.step
    q = torch.from_numpy(np.concatenate([qf[:, None], quv], 1).astype(np.float32))[None].to(model.device)
    tr = vi = None
    with torch.inference_mode(), model.autocast():
        pred(video[None, :1].to(model.device).float(), is_first_step=True, queries=q)
        for i in range(2 * step, T, step):  # upstream's demo: a chunk of the last 2*step frames every step frames
            tr, vi = pred(video[None, max(0, i - 2 * step) : i].to(model.device).float())
        last = T - 1
        chunk = video[-(last % step) - step - 1 :][-2 * step :]
        tr, vi = pred(chunk[None].to(model.device).float())
    tr = tr[0].float().permute(1, 0, 2).cpu().numpy()
    vi = vi[0].permute(1, 0).cpu().numpy()
    out_uv = np.full((len(qf), T, 2), np.nan, np.float32)
    out_vis = np.zeros((len(qf), T), bool)
    L = min(T, tr.shape[1])
    out_uv[:, :L], out_vis[:, :L] = tr[:, :L], vi[:, :L]
    return out_uv, out_vis
