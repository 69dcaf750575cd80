"""Stage 3 (CoTracker3 backend): track stage 2's seeds with CoTracker3, checked against depth, chunk by chunk.

The video is read `track.chunk_frames` at a time, consecutive chunks sharing `chunk_overlap` frames
(tasks/extract/chunks.py; one chunk when the episode is no longer). In each chunk:
- every existing track is handed on at its last visible frame in the overlap and tracked forwards through the
  chunk's new frames, in its own row (stable ids). Its query there is its last visible pixel, which is its last
  3D world position projected through that frame's camera (lift and projection invert each other). A track
  unseen throughout the overlap ends: a 2D tracker cannot be queried at a hidden point.
- new queries: with the dino keypoint backend, the seeds whose own frame falls in the chunk's new frames (in
  later chunks only those on cells no visible track covers at that frame); with the classical one, frame 0's
  seeds in the first chunk, then at every `reseed_every` frame `propose` seeds new points in grid cells no
  visible track covers, tracked in one more pass (so a cell uncovered at several re-seed frames of a chunk may
  be seeded at each of them). `max_points` caps the first chunk's queries, and in each later chunk the tracks
  handed on plus its new queries, so a long video keeps getting queries as tracks end.

Every new query is tracked forwards and, on the time-reversed chunk, backwards. The offline model sees
windows of `window` frames that share `overlap` frames; a track is handed on to the next window at
its last visible frame inside the overlap (a track unseen throughout an overlap ends there). The
online model streams its own 16-frame window. Either way memory is bounded by the window and the chunk.

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
from tasks.extract.chunks import EpisodeFrames, Window, chunk_spans
from tasks.extract.keypoints import propose, uncovered_mask
from tasks.extract.lift import lift_tracks
from tasks.extract.progressive import check_chunks, in_mask, seed_frames
from tasks.types import Episode


def load(tcfg) -> CoTracker:
    """The cached predictor the track settings name."""
    if tcfg.cotracker_model == "cotracker3_offline" and tcfg.overlap >= tcfg.window:
        raise ConfigurationError(f"track.overlap ({tcfg.overlap}) must be smaller than track.window ({tcfg.window})")
    return load_cotracker(tcfg.cotracker_repo, tcfg.cotracker_model, tcfg.weights, tcfg.device)


class _Rows:
    """The tracks so far, one row each for the whole video: query frame and pixel, entity, uv (n,T,2), vis (n,T)."""

    def __init__(self, T: int):
        self.T, self.qf, self.quv, self.ent, self.uv, self.vis = T, [], [], [], [], []

    @property
    def n(self) -> int:
        return sum(len(q) for q in self.qf)

    def add(self, lo: int, qf, quv, ent, uv, vis) -> None:
        """New tracks, with uv/vis (n,L,...) over the chunk frames [lo, lo+L)."""
        full_uv = np.full((len(qf), self.T, 2), np.nan, np.float32)
        full_vis = np.zeros((len(qf), self.T), bool)
        full_uv[:, lo : lo + uv.shape[1]], full_vis[:, lo : lo + uv.shape[1]] = uv, vis
        self.qf.append(np.asarray(qf, np.int64))
        self.quv.append(np.asarray(quv, np.float32))
        self.ent.append(np.asarray(ent, np.int32))
        self.uv.append(full_uv)
        self.vis.append(full_vis)

    def seen_at(self, t: int) -> np.ndarray:
        """Pixels (m,2) of the tracks visible at frame t."""
        return np.concatenate([u[v[:, t], t] for u, v in zip(self.uv, self.vis)]) if self.uv else np.zeros((0, 2))

    def hand_on(self, lo: int, new: int):
        """Each track seen in frames [lo, new): (batch, row, last frame seen there, its pixel)."""
        out = []
        for b, (u, v) in enumerate(zip(self.uv, self.vis)):
            seen = v[:, lo:new]
            r = np.flatnonzero(seen.any(1))
            h = lo + seen.shape[1] - 1 - np.argmax(seen[r, ::-1], axis=1)
            out += [(b, int(i), int(t), u[i, t]) for i, t in zip(r, h)]
        return out

    def done(self):
        cat = np.concatenate
        return cat(self.qf), cat(self.quv), cat(self.ent), cat(self.uv), cat(self.vis)


def track_cotracker(ep: Episode, s) -> Episode:
    """query_frame, query_uv, tracks_uv (N,T,2), visible (N,T), cluster_id from the seeds (s: track.TrackSettings)."""
    kcfg, tcfg = s.keypoints, s.track
    model = load(tcfg)
    check_chunks(tcfg)
    T = ep.n_frames
    W, H = ep.image_size
    src, rows = EpisodeFrames(ep, rgb=True), _Rows(T)
    seeded = ep.seed_frame is not None
    if seeded:  # dino: every seed from its own frame, with its entity
        order = np.argsort(ep.seed_frame, kind="stable")[: kcfg.max_points]
        sq, suv, sent = ep.seed_frame[order].astype(np.int64), ep.seed_uv[order], ep.seed_entity[order]
    later = seed_frames(T, kcfg.reseed_every)[1:]  # classical seeds: frame 0 has stage 2's
    for k, c in enumerate(chunk_spans(T, min(tcfg.chunk_frames, T), min(tcfg.chunk_overlap, T - 1))):
        win = src.window(c.lo, c.hi)
        video = torch.from_numpy(win.frames(c.lo, c.hi)).permute(0, 3, 1, 2)  # (L,3,H,W) uint8, moved per window

        def run(qf, quv, backward=True):
            return track_points(model, video, qf - c.lo, quv, win.depth_, win.K, win.w2c_, tcfg, backward)

        handed = rows.hand_on(c.lo, c.new) if k else []
        if handed:  # every track seen in the overlap walks on through the chunk's new frames, in its own row
            b, i, h, uv_h = (np.array(x) for x in zip(*handed))
            uv, vis = run(h, uv_h.astype(np.float32), backward=False)
            for j in range(len(b)):
                rows.uv[b[j]][i[j], c.new : c.hi] = uv[j, c.new - c.lo :]
                rows.vis[b[j]][i[j], c.new : c.hi] = vis[j, c.new - c.lo :]
        if seeded:
            m = np.flatnonzero((sq >= c.new) & (sq < c.hi))
            if k:  # later chunks: new seeds only where no visible track is
                free = {q: uncovered_mask(rows.seen_at(q), W, H, s.coverage_grid) for q in np.unique(sq[m])}
                m = m[np.array([in_mask(suv[i : i + 1], free[sq[i]])[0] for i in m], bool)]
            if len(m):
                rows.add(c.lo, sq[m], suv[m], sent[m], *run(sq[m], suv[m]))
            continue
        if k == 0:
            quv = ep.seed_uv[: kcfg.max_points]
            rows.add(c.lo, np.zeros(len(quv), np.int64), quv, np.full(len(quv), -1), *run(np.zeros(len(quv), int), quv))
        budget = kcfg.max_points - (len(handed) if k else rows.n)  # later chunks: what ended is free
        new_f, new_uv = _reseed(win, rows, c, later, kcfg, tcfg, s.coverage_grid, budget, W, H)
        if len(new_uv):
            rows.add(c.lo, new_f, new_uv, np.full(len(new_f), -1), *run(new_f, new_uv))
    qf, quv, ent, uv, vis = rows.done()
    kept = vis.sum(1) >= tcfg.min_visible_frames
    if not kept.any():
        raise ValueError("no trackable points: no CoTracker track stays visible (and depth-consistent) long enough")
    return ep.replace(
        gray=None, seed_uv=None, seed_flat=None, seed_frame=None, seed_entity=None,
        query_frame=qf[kept].astype(np.int32),
        query_uv=quv[kept],
        tracks_uv=uv[kept],
        visible=vis[kept],
        cluster_id=ent[kept],
    )


def _reseed(win: Window, rows: _Rows, c, seed_at: np.ndarray, kcfg, tcfg, grid, budget, W, H):
    """New queries at the seed frames `seed_at` among the chunk's new frames (every `reseed_every` and the last, as
    in the LK path), in cells no visible track covers."""
    frames, points = [], []
    for q in seed_at[(seed_at >= c.new) & (seed_at < c.hi)].tolist():
        if budget <= 0:
            break
        free = uncovered_mask(rows.seen_at(q), W, H, grid)
        new, _ = propose(win.gray(q), kcfg, tcfg.window_px, np.isfinite(win.depth(q)) & free, limit=budget)
        new = new[in_mask(new, free)]  # a corner's sub-pixel refinement may step into a covered cell
        frames.append(np.full(len(new), q, np.int64))
        points.append(new)
        budget -= len(new)
    if not points:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    return np.concatenate(frames), np.concatenate(points).astype(np.float32)


def track_points(model: CoTracker, video, qf, quv, depth, K, w2c, tcfg, backward: bool = True):
    """Queries (t, x, y) = (qf (n,), quv (n,2)) through video (T,3,H,W): (uv (n,T,2) float32, visible (n,T)).

    Forward from each query frame and (`backward`) backward on the reversed video; CoTracker's visibility is then
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
    if backward and (qf > 0).any():
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
