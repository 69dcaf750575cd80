"""Stage 3 (classical backend): progressive long-video tracking, chunk by chunk, tracks stitched with stable ids.

docs/method.md#stage-3-tracking. The video is read one chunk at a time (tasks/extract/chunks.py). Every
existing track walks on into the next chunk from its own state, whose last 3D world position is projected
through each new frame's camera to start LK there (a lost track is carried in 3D, unseen, until it is found
again or has been unseen for `max_gap_frames`); it keeps its row, so its id is stable across chunks. At each
seed frame (every `reseed_every` and the last frame, or a dino seed's own frame) new queries go only to grid
cells no visible track covers; they are tracked forwards and, as far back as the chunk in memory reaches (at
least `chunk_overlap` frames), backwards.

With one chunk (`chunk_frames` at least the episode's length) this is the one-pass tracker exactly. With
several, forward walks take the very same steps; what can differ is only (a) how far back a query seeded in a
later chunk is tracked, and hence (b) which short tracks reach `min_visible_frames`: a track still alive at
a chunk's end counts (for coverage and the `max_points` budget) until the last chunk decides.

`max_points` caps the queries of the first chunk, as it caps a one-pass episode's. In a later chunk where at least a
quarter of it has ended, one batch of new queries (at its first seed frame with uncovered cells) tops the tracks
still walking up to `max_points`, so a long video keeps getting queries where its tracks have ended (a cut, a
camera that turns away) while what is tracked at once stays bounded. One batch, not one per seed frame: each batch
costs an LK call per frame while any of its points walks, so many small batches would make a long video slow.

The flat-point rule (drop flat points near a moving textured track) needs each track's largest motion over
the whole video; it is gathered frame by frame as frames leave memory, so nothing of size (N, T, 3) is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from tasks.config import KeypointConfig, TrackConfig
from tasks.errors import ConfigurationError
from tasks.extract.chunks import FrameSource, Window, chunk_spans
from tasks.extract.keypoints import propose, uncovered_mask
from tasks.extract.lift import lift_points
from tasks.extract.lk import Walk


class Seeds(NamedTuple):
    """Stage 2's queries: uv (S,2), flat (S,); frame (S,) and entity (S,) with the dino backend (None: frame 0)."""

    uv: np.ndarray
    flat: np.ndarray
    frame: np.ndarray | None = None
    entity: np.ndarray | None = None


class Tracked(NamedTuple):
    query_frame: np.ndarray  # (N,) int32
    query_uv: np.ndarray  # (N,2) float32
    tracks_uv: np.ndarray  # (N,T,2) float32, NaN where not seen
    visible: np.ndarray  # (N,T) bool
    cluster_id: np.ndarray  # (N,) int32


class Store:
    """Every track's row of the outputs, tracks_uv (cap,T,2) and visible (cap,T), allocated once.

    Pages are committed only where written, so the rows in use (and those of the batch being seeded) are all that
    take memory; rows dropped are squeezed out in place, so the outputs are never held twice.
    """

    def __init__(self, cap: int, n_frames: int):
        self.uv = np.empty((cap, n_frames, 2), np.float32)
        self.vis = np.zeros((cap, n_frames), bool)
        self.n = 0

    def reserve(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Views of n fresh rows (NaN, unseen) after those in use."""
        r = slice(self.n, self.n + n)
        self.uv[r], self.vis[r] = np.nan, False
        return self.uv[r], self.vis[r]

    def make_room(self, extra: int, batches: list["Batch"]) -> None:
        """At least `extra` free rows after those in use: a fuller store is copied into one twice its size (the rows
        in use are then briefly held twice) and every batch's views are moved onto it."""
        if self.n + extra <= len(self.uv):
            return
        cap = max(2 * len(self.uv), self.n + extra)
        uv, vis = np.empty((cap, *self.uv.shape[1:]), np.float32), np.zeros((cap, self.vis.shape[1]), bool)
        uv[: self.n], vis[: self.n] = self.uv[: self.n], self.vis[: self.n]
        self.uv, self.vis = uv, vis
        for b in batches:
            r = slice(b.start, b.start + len(b.flat))
            b.uv, b.vis = uv[r], vis[r]

    def keep(self, start: int, rows: np.ndarray) -> None:
        """Rows start + `rows` (ascending) move up to start, start + 1, ...; the rows after them are free again."""
        for j, i in enumerate(rows.tolist()):
            if i != j:
                self.uv[start + j], self.vis[start + j] = self.uv[start + i], self.vis[start + i]
        self.n = start + len(rows)


@dataclass
class Batch:
    """Queries seeded at one frame: their rows of the output (from `start`), forward walk, flat-rule statistics."""

    q: int
    start: int
    uv_q: np.ndarray
    flat: np.ndarray
    ent: np.ndarray
    uv: np.ndarray  # (n,T,2) view of the store
    vis: np.ndarray  # (n,T) view of the store
    fwd: Walk
    ref: np.ndarray  # (n,3) world point at the query frame (NaN: no depth)
    motion: np.ndarray = field(init=False)  # (n,) largest distance from ref over the frames done

    def __post_init__(self):
        self.motion = np.full(len(self.uv_q), np.nan)

    def subset(self, keep: np.ndarray, store: Store) -> "Batch":
        """The batch without the rows `keep` (n,) drops; it must be the store's last (seeding only)."""
        store.keep(self.start, np.flatnonzero(keep))
        r = slice(self.start, store.n)
        return Batch(self.q, self.start, self.uv_q[keep], self.flat[keep], self.ent[keep], store.uv[r], store.vis[r],
                     self.fwd.subset(keep), self.ref[keep])


TOP_UP_PART = 4  # a later chunk seeds again once this part of max_points (a quarter) has ended


def check_chunks(tcfg: TrackConfig) -> None:
    if tcfg.chunk_overlap >= tcfg.chunk_frames:
        raise ConfigurationError(
            f"track.chunk_overlap ({tcfg.chunk_overlap}) must be smaller than track.chunk_frames ({tcfg.chunk_frames})"
        )


def seed_batch(win: Window, q: int, uv_q, flat, ent, store: Store, back_to: int, cfg: TrackConfig) -> Batch:
    """Track queries at frame q forwards to the window's end and backwards to frame `back_to`, in new store rows."""
    start = store.n
    uv, vis = store.reserve(len(uv_q))
    X0 = lift_points(uv_q, win.depth(q), win.K, win.w2c(q))
    uv[:, q] = uv_q
    vis[:, q] = np.isfinite(X0).all(1)
    fwd, bwd = Walk.start(q, 1, uv_q, X0, flat), Walk.start(q, -1, uv_q, X0, flat)
    fwd.advance(win, win.hi, cfg, uv, vis)
    bwd.advance(win, back_to - 1, cfg, uv, vis)
    ref = np.where(vis[:, q, None], X0, np.nan)
    return Batch(q, start, np.asarray(uv_q), flat, ent, uv, vis, fwd, ref)


def seed_frames(n_frames: int, every: int) -> np.ndarray:
    """Frame 0, every `every`-th frame, and the last frame, whose queries walk back over the frames after the last
    periodic seed: a region entering or re-emerging there would otherwise never get a query (on the sweep's 30-frame
    clips coverage fell from ~0.65 to ~0.47 over those frames)."""
    return np.unique(np.r_[np.arange(0, n_frames, every), n_frames - 1])


def track_progressive(src: FrameSource, seeds: Seeds, tcfg: TrackConfig, kcfg: KeypointConfig, grid: int) -> Tracked:
    """Track `seeds` (and new queries where coverage is missing) through `src`, `tcfg.chunk_frames` at a time."""
    check_chunks(tcfg)
    T = src.n_frames
    W, H = src.image_size
    spans = chunk_spans(T, min(tcfg.chunk_frames, T), min(tcfg.chunk_overlap, T - 1), tcfg.max_gap_frames + 1)
    seeded = seeds.frame is not None
    todo = np.unique(seeds.frame) if seeded else seed_frames(T, kcfg.reseed_every)
    batches: list[Batch] = []
    budget, done = kcfg.max_points, 0  # the first chunk spends max_points; later ones top up what ended
    store = Store(max(kcfg.max_points, 0 if seeded else len(seeds.uv)), T)  # no more queries than the budget
    snaps: dict[int, list] = {}  # flat query frame -> [(batch, rows, xyz)] of textured tracks seen there
    flat_frames = set()
    for k, c in enumerate(spans):
        win = src.window(c.lo, c.hi)
        for b in batches:  # every existing track walks on into the chunk
            b.fwd.advance(win, c.hi, tcfg, b.uv, b.vis)
        freed = kcfg.max_points - sum(int((~b.fwd.dead).sum()) for b in batches) if k else 0
        top_up = freed - max(budget, 0) >= kcfg.max_points // TOP_UP_PART
        if top_up:  # one batch of new queries, up to max_points tracks walking
            budget = freed
            store.make_room(budget, batches)
        for q in todo[(todo >= c.new) & (todo < c.hi)].tolist():
            if budget <= 0:
                break
            at_q = [b.uv[b.vis[:, q], q] for b in batches]
            free = uncovered_mask(np.concatenate(at_q) if at_q else np.zeros((0, 2)), W, H, grid)
            if seeded:
                mine = np.flatnonzero(seeds.frame == q)
                mine = mine[in_mask(seeds.uv[mine], free)][:budget]
                uv_q, flat, ent = seeds.uv[mine], seeds.flat[mine], seeds.entity[mine].astype(np.int32)
            else:
                if q == 0:
                    uv_q, flat = seeds.uv, seeds.flat
                else:
                    allowed = np.isfinite(win.depth(q)) & free
                    uv_q, flat = propose(win.gray(q), kcfg, tcfg.window_px, allowed, limit=budget)
                    ok = in_mask(uv_q, free)  # a corner's sub-pixel refinement may step into a covered cell
                    uv_q, flat = uv_q[ok], flat[ok]
                ent = np.full(len(uv_q), -1, np.int32)  # classical: no entities
            if len(uv_q) == 0:
                continue
            b = seed_batch(win, q, uv_q, flat, ent, store, c.lo, tcfg)
            kept = b.vis.sum(1) >= tcfg.min_visible_frames  # a point LK could not follow is no trace
            if c.hi < T:
                kept |= ~b.fwd.dead  # still walking: later chunks decide
            b = b.subset(kept, store)
            batches.append(b)
            budget = 0 if top_up else budget - len(b.flat)
            if b.flat.any():
                flat_frames.add(q)
        nxt = spans[k + 1].lo if k + 1 < len(spans) else T
        for t in range(done, nxt):  # frames no later chunk touches: gather the flat rule's statistics
            _settle(win, t, batches, snaps if t in flat_frames else None)
        done, win = nxt, None  # the chunk goes before the next one is read
    if not batches:
        raise ValueError("no trackable points: every candidate is on flat texture or unknown depth")
    kept = [b.vis.sum(1) >= tcfg.min_visible_frames for b in batches]
    near = _near_motion(batches, kept, snaps, tcfg)
    keep = [k & (~b.flat | ~n) for b, k, n in zip(batches, kept, near)]
    cat = lambda f: np.concatenate([f(b)[m] for b, m in zip(batches, keep)])  # noqa: E731
    qf, quv, ent = cat(lambda b: np.full(len(b.flat), b.q, np.int32)), cat(lambda b: b.uv_q), cat(lambda b: b.ent)
    store.keep(0, np.concatenate([b.start + np.flatnonzero(m) for b, m in zip(batches, keep)]))
    return Tracked(qf, quv.astype(np.float32), store.uv[: store.n], store.vis[: store.n], ent)


def in_mask(uv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n,) whether pixels uv (n,2) fall where `mask` (H,W) is True (nearest pixel; outside the image: clipped)."""
    H, W = mask.shape
    px = np.clip(np.rint(uv).astype(int), 0, [W - 1, H - 1]).reshape(-1, 2)
    return mask[px[:, 1], px[:, 0]]


def _settle(win: Window, t: int, batches: list[Batch], snaps: dict | None) -> None:
    """Frame t is final: lift its visible points, update each track's largest motion, and at a flat query frame
    keep where the textured tracks were (the flat rule compares against them once motion is known)."""
    for i, b in enumerate(batches):
        rows = np.flatnonzero(b.vis[:, t])
        if rows.size == 0:
            continue
        xyz = lift_points(b.uv[rows, t], win.depth(t), win.K, win.w2c(t))
        b.motion[rows] = np.fmax(b.motion[rows], np.linalg.norm(xyz - b.ref[rows], axis=1))
        if snaps is not None:
            tex = ~b.flat[rows] & np.isfinite(xyz).all(1)
            snaps.setdefault(t, []).append((i, rows[tex], xyz[tex]))


def _near_motion(batches: list[Batch], kept: list[np.ndarray], snaps: dict, cfg: TrackConfig) -> list[np.ndarray]:
    """Per batch (n,): flat points that start within `flat_radius_m` of a kept textured track that moves.

    A flat point is only followed as a static world point, which is wrong on a moving body; the
    textured tracks around it tell whether its neighbourhood is static.
    """
    movers = [k & ~b.flat & (b.motion > cfg.flat_motion_m) for b, k in zip(batches, kept)]
    out = [np.zeros(len(b.flat), bool) for b in batches]
    for i, b in enumerate(batches):
        if not b.flat.any():
            continue
        pts = [xyz[movers[j][rows]] for j, rows, xyz in snaps.get(b.q, [])]
        pts = np.concatenate(pts) if pts else np.zeros((0, 3))
        if len(pts):
            d, _ = cKDTree(pts).query(b.ref[b.flat], k=1)
            out[i][b.flat] = d < cfg.flat_radius_m
    return out
