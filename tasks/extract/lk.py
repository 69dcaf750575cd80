"""Depth-aware forward-backward Lucas-Kanade: one batch of points walked frame by frame in one time direction.

Plain forward-backward LK marks points visible after they slide off flat surfaces or across occlusions.
Here each LK step must also agree in 3D: the lifted point has to land within `depth_jump_m` of where the
track's own world motion predicts it. A point LK loses is carried with the rigid motion of nearby points
that were moving like it (tasks/extract/rigid.py) and counts as seen again when LK from its last sighting
finds it near that guess, or when the observed surface is within `reacquire_depth_m` of it and it still
looks the same; after `max_gap_frames` unseen it is dropped. A moving point no neighbour carries stays where it
was lost, and on a smooth moving surface (a robot's forearm) it is found there again and walks on as a static
point, 15-20 cm off within a second; `end_lost_movers` (off by default: it costs coverage) ends it instead.
Points on flat texture are followed only as static world points (their image motion is unobservable), seen
where the surface is within `reacquire_depth_m` of them, plus the window's `pose_slack_m`
(`track.estimated_pose_slack_m`, off by default) when the camera poses are estimated: their own error moves a
static point by a few mm from frame to frame.

A `Walk` holds all a step needs (last pixel, last 3D world position, velocity, frames unseen, templates),
so a walk resumed chunk after chunk takes exactly the steps of one pass over the whole video: each step
reads the current and previous frames and a lost point's last sighting, at most `max_gap_frames + 1` back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tasks.config import TrackConfig
from tasks.extract.chunks import Window
from tasks.extract.lift import lift_points
from tasks.extract.rigid import SAME_MOTION_M, carry
from tasks.geometry import inside_image, project

PATCH = 11
FLAT_STD = 4.0  # grey levels: below this a patch is too flat for NCC


def lk_forward_backward(prev: np.ndarray, cur: np.ndarray, p0: np.ndarray, init: np.ndarray, cfg: TrackConfig):
    """LK image prev -> cur from p0 (guess `init`), checked back cur -> prev: (p1, ok, fb_error_px)."""
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


@dataclass
class Walk:
    """n points walked from their query frame in direction `step` (+1 or -1); `prev` is the last frame done."""

    step: int
    prev: int
    flat: np.ndarray  # (n,) followed by geometry only
    p: np.ndarray  # (n,2) float32 last pixel
    X: np.ndarray  # (n,3) last seen world point, or where the body carried it since
    V: np.ndarray  # (n,3) smoothed world velocity per frame
    lost: np.ndarray  # (n,) frames since last seen; 0 = seen in the previous frame
    dead: np.ndarray  # (n,) unseen for more than max_gap_frames (or never lifted)
    templates: np.ndarray  # (n, PATCH*PATCH) how each point looked when last seen
    textured: np.ndarray  # (n,) its template is textured enough for NCC
    last_frame: np.ndarray  # (n,) where each point was last seen, for re-acquisition by LK

    @classmethod
    def start(cls, q: int, step: int, uv_q: np.ndarray, X0: np.ndarray, flat: np.ndarray) -> "Walk":
        n = len(uv_q)
        return cls(step, q, flat, uv_q.astype(np.float32).copy(), X0.astype(np.float64).copy(), np.zeros((n, 3)),
                   np.zeros(n, np.int64), ~np.isfinite(X0).all(1), np.zeros((n, PATCH * PATCH), np.float32),
                   np.zeros(n, bool), np.full(n, q))

    def subset(self, keep: np.ndarray) -> "Walk":
        return Walk(self.step, self.prev, *(a[keep] for a in (self.flat, self.p, self.X, self.V, self.lost, self.dead,
                                                               self.templates, self.textured, self.last_frame)))

    def advance(self, win: Window, stop: int, cfg: TrackConfig, uv: np.ndarray, vis: np.ndarray) -> None:
        """Step on through frames up to `stop` (exclusive), writing uv (n,T,2) and vis (n,T) at each absolute frame."""
        frames = range(self.prev + self.step, stop, self.step)
        if self.dead.all():  # nothing left to follow: the steps would change nothing that is read
            self.prev = frames[-1] if len(frames) else self.prev
            return
        for s in frames:
            self._step(win, s, cfg, uv, vis)

    def _step(self, win: Window, s: int, cfg: TrackConfig, uv, vis) -> None:
        H, W = win.gray_.shape[1:]
        K, w2c_s, depth_s, prev = win.K, win.w2c(s), win.depth(s), self.prev
        p, X, V, lost, dead, flat = self.p, self.X, self.V, self.lost, self.dead, self.flat
        n = len(p)
        seen = np.zeros(n, bool)
        Xn = np.full((n, 3), np.nan)

        act = np.flatnonzero((lost == 0) & ~dead & ~flat)
        if act.size:
            Xp = X[act] + V[act]
            proj = project(Xp, K, w2c_s)
            ok_proj = np.isfinite(proj).all(1) & (proj[:, 2] > 0) & inside_image(proj[:, :2], W, H)
            init = np.where(ok_proj[:, None], proj[:, :2], p[act])
            p1, ok, fb = lk_forward_backward(win.gray(prev), win.gray(s), p[act], init, cfg)
            X1 = lift_points(p1, depth_s, K, w2c_s)
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
                self.templates[newly_lost], std = _patches(win.gray(prev), p[newly_lost])
                self.textured[newly_lost] = std > FLAT_STD

        # Points not followed by LK move with their visible neighbours, then must be confirmed
        # by depth (and look) before they count as visible again.
        rest = np.flatnonzero(~seen & ~dead)
        if rest.size:
            anchors = np.flatnonzero(seen)
            moves = rest[~flat[rest]]  # flat points stay put: only a static one can be confirmed
            X[moves], used = carry(X[moves], X[anchors], Xn[anchors], V[moves], V[anchors])
            if cfg.end_lost_movers:  # nothing carried a moving point: where it went is unknown, so its track ends
                uncarried = moves[(used == 0) & (np.linalg.norm(V[moves], axis=1) > SAME_MOTION_M)]
                dead[uncarried] = True
                rest = rest[~dead[rest]]
            proj = project(X[rest], K, w2c_s)
            in_view = np.isfinite(proj).all(1) & (proj[:, 2] > 0) & inside_image(proj[:, :2], W, H)
            c, pc = rest[in_view], proj[in_view, :2]
            obs = lift_points(pc, depth_s, K, w2c_s)
            gap = np.linalg.norm(obs - X[c], axis=1)
            plausible = gap < cfg.depth_jump_m  # hidden points (surface far off the guess) are skipped
            c, pc, obs, gap = c[plausible], pc[plausible], obs[plausible], gap[plausible]
            tex = np.flatnonzero(~flat[c])
            if tex.size:  # first by appearance: LK from the last sighting, near the carried guess
                found, pf, Xf = self._relocate(win, s, c[tex], pc[tex], X[c[tex]], cfg)
                hit = tex[found]
                seen[c[hit]] = True
                p[c[hit]], Xn[c[hit]] = pf[found], Xf[found]
                other = np.ones(len(c), bool)
                other[hit] = False
                c, pc, obs, gap = c[other], pc[other], obs[other], gap[other]
            tol = cfg.reacquire_depth_m + np.where(flat[c], win.pose_slack_m, 0.0)  # flat points: depth alone decides
            near = gap < tol  # then by geometry: the surface is where the carried point says
            c, pc, obs = c[near], pc[near], obs[near]
            if c.size:
                back = ~self.textured[c]  # flat template: depth alone decides
                if (~back).any():
                    t = ~back
                    back[t] = (self.templates[c[t]] * _patches(win.gray(s), pc[t])[0]).sum(1) > cfg.reacquire_ncc
                c = c[back]
                seen[c] = True
                p[c] = pc[back]
                Xn[c] = obs[back]

        cont = seen & (lost == 0)
        V[cont] = 0.5 * V[cont] + 0.5 * (Xn[cont] - X[cont])
        V[seen & (lost > 0)] = 0.0
        X[seen] = Xn[seen]
        self.last_frame[seen] = s
        lost[seen] = 0
        lost[~seen] += 1
        dead |= lost > cfg.max_gap_frames
        uv[seen, s] = p[seen]
        vis[seen, s] = True
        self.prev = s

    def _relocate(self, win: Window, s: int, c, guess_uv, guess_X, cfg: TrackConfig):
        """LK from each point's last sighting to frame s, started at the carried guess.

        Returns (found (n,), uv (n,2), X (n,3)); found needs a clean forward-backward check and a
        lifted point within `depth_jump_m` of the carried one.
        """
        found = np.zeros(len(c), bool)
        uv, X = guess_uv.copy(), np.full((len(c), 3), np.nan)
        for f in np.unique(self.last_frame[c]):
            m = np.flatnonzero(self.last_frame[c] == f)
            p1, ok, fb = lk_forward_backward(win.gray(f), win.gray(s), self.p[c[m]], guess_uv[m], cfg)
            X1 = lift_points(p1, win.depth(s), win.K, win.w2c(s))
            good = ok & (fb < cfg.fb_max_px) & (np.linalg.norm(X1 - guess_X[m], axis=1) < cfg.depth_jump_m)
            found[m[good]] = True
            uv[m[good]], X[m[good]] = p1[good], X1[good]
        return found, uv, X
