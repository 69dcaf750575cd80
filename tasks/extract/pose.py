"""Stage 1b: camera poses. `given` poses are read by decode; `open3d` estimates them from RGB-D.

The estimate follows docs/method.md#stage-1-depth-and-camera-poses, with RGB-D registration in place of VGGT:
1. tracking sweep (`track_keyframes`): every frame is registered directly to the keyframe before it
   (corners lifted with the keyframe's depth, LK + PnP, tasks/extract/odometry.py), the previous
   frames' results only guiding the search. A keyframe at least every `keyframe_every` frames, and
   one inserted wherever a frame registers weakly (`keyframe_min_inlier_frac`): registration to a
   keyframe fails beyond ~12 degrees of rotation, which fixed keyframes reached once a preset kept
   10 of 20 fps of an orbiting camera;
2. global sparse pass: each keyframe is also registered to a bounded set of earlier keyframes (pairs
   estimated to differ by more than `max_register_deg` are skipped) and all are solved jointly by
   open3d pose-graph optimisation: the anchors, in camera 0's frame;
3. dense chunks of `chunk_keyframes` keyframes: the chunk's keyframes are registered to its middle
   one, giving local poses for every chunk frame with at most two registrations, no chaining;
4. each chunk is fitted to its anchors (tasks/extract/anchoring.py): SE(3) with given depth, Sim(3) with
   predicted depth (the chunk's depth is rescaled by the fitted scale, so points and poses agree).
   A keyframe the fit rejects as an outlier (its registration to the chunk's middle one disagrees with
   the pose graph) is untied: its frames hang off its pose from the graph instead;
5. bridging: a frame no registration reached gets its pose interpolated from the nearest registered
   frames (`bridge`); more than `max_lost_frac` of them fails the episode, naming the likely cause.
Cost is linear in length: a bounded number of registrations per frame and per keyframe.

World = camera of frame 0 (w2c[0] = identity); one intrinsics matrix for the whole episode. Any
`w2c` decode read is ignored: the ground truth must not leak into the estimate.

Scale honesty: `scale_spread` = (p90 - p10) / median of the per-chunk Sim(3) scales that could be
measured (anchor cameras spanning `min_scale_baseline_m`); NaN for SE(3) or fewer than two such
chunks. Above `max_scale_spread`, `metric_scale_ok` is False: the episode lands, flagged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from tasks.extract.anchoring import fit_chunk, solve_keyframes
from tasks.config import IngestConfig, PoseConfig
from tasks.errors import ConfigurationError, EpisodeInputError
from tasks.geometry import invert_rigid
from tasks.extract.odometry import FAILED, KeyframePoints, Registration, dense_refine, keyframe_points, register, to_gray
from tasks.extract.spill import BLOCK_FRAMES, blocks, empty_like_episode, release
from tasks.stage import Stage
from tasks.types import Episode, EpisodeSource


NOTE_KEY = "pose_note"  # errors[NOTE_KEY]: frames bridged in an episode that stays "ok"
HOLDS_DEG = 12.0  # camera rotation per stored frame up to which registration held on the orbit sim (measured)
POINTS_KEPT = 256  # frames whose corners stay cached (keyframes are re-registered to their neighbours later)
COMFORTABLE_DEG = 6.0  # the rotation per stored frame the failure message's suggested frame rate aims at


@dataclass(frozen=True)
class PoseEstimate:
    c2w: np.ndarray  # (T, 4, 4) camera -> world (world = camera 0)
    frame_scale: np.ndarray  # (T,) Sim(3) scale of each frame's chunk (1 where SE(3) or not measured)
    chunk_scales: np.ndarray  # (C,) measured per-chunk scales (empty for SE(3))
    lost: np.ndarray  # (L,) frames no registration reached, ascending; their poses are bridged
    keyframes: np.ndarray  # (n,) frame index of each keyframe (the periodic ones and those inserted)
    textureless: np.ndarray  # (L,) bool: lost frame with fewer than `min_inliers` corners with depth
    step_deg: float  # largest rotation between consecutive registered frames (degrees); NaN if none

    @property
    def n_lost(self) -> int:
        return len(self.lost)

    @property
    def scale_spread(self) -> float:
        s = self.chunk_scales
        if len(s) < 2:
            return float("nan")
        p10, p50, p90 = np.percentile(s, [10, 50, 90])
        return float((p90 - p10) / p50)


def blend_poses(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """SE(3) pose (4, 4) a fraction `s` of the way from `a` to `b` (slerp rotation, lerp translation);
    s outside [0, 1] extrapolates along the same path."""
    step = cv2.Rodrigues(a[:3, :3].T @ b[:3, :3])[0]
    out = np.eye(4)
    out[:3, :3] = a[:3, :3] @ cv2.Rodrigues(s * step)[0]
    out[:3, 3] = (1 - s) * a[:3, 3] + s * b[:3, 3]
    return out


def bridge(c2w: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Poses (T, 4, 4) where each frame not `ok` (T,) is interpolated from the nearest registered frames
    on either side (`blend_poses`), or holds the nearest one at the ends; needs at least one ok frame."""
    out = c2w.copy()
    good = np.flatnonzero(ok)
    for t in np.flatnonzero(~ok):
        i = np.searchsorted(good, t)
        if i == 0 or i == len(good):
            out[t] = c2w[good[min(i, len(good) - 1)]]
        else:
            p, n = good[i - 1], good[i]
            out[t] = blend_poses(c2w[p], c2w[n], (t - p) / (n - p))
    return out


def turn_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees of rotation matrices (..., 3, 3)."""
    return np.degrees(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)))


def step_rotation_deg(c2w: np.ndarray, ok: np.ndarray) -> float:
    """Largest camera rotation (degrees) between consecutive stored frames that were both registered;
    NaN when no two consecutive frames were (rotation across a gap says little: the camera may turn back)."""
    pair = np.flatnonzero(ok[:-1] & ok[1:])
    if not len(pair):
        return float("nan")
    rel = np.swapaxes(c2w[pair, :3, :3], 1, 2) @ c2w[pair + 1, :3, :3]
    return float(turn_deg(rel).max())


@dataclass(frozen=True)
class Sweep:
    """The tracking sweep: each registered frame's pose relative to the keyframe before it."""

    keyframes: np.ndarray  # (n,) frame indices; keyframe j was registered to keyframe j - 1
    rel: np.ndarray  # (T, 4, 4) T_{keyframe at or before t <- t} (keyframes: T_{previous keyframe <- t})
    ok: np.ndarray  # (T,) bool: registered (the first keyframe counts as registered)
    guess: np.ndarray  # (n, 4, 4) keyframe c2w chained through the sweep (a guess for the global pass)
    at_keyframe: dict[int, Registration]  # keyframe j's registration to keyframe j - 1


def track_keyframes(
    points: Callable[[int], KeyframePoints], reg: Callable[[int, int, np.ndarray], Registration], T: int, cfg: PoseConfig
) -> Sweep:
    """Register every frame to the latest keyframe, inserting keyframes where registration weakens.

    A keyframe every `keyframe_every` frames at most; besides, when a frame registers with fewer
    inliers than `keyframe_min_inlier_frac` of its keyframe's corners, or not at all, the last
    registered frame becomes a keyframe and the frame is registered to it (classic VO keyframe
    insertion: registration then holds at several degrees of camera rotation per stored frame).
    Search guesses extrapolate the last two registered frames at constant velocity. The first
    keyframe is the first frame with `min_inliers` corners with depth; a frame that registers
    nowhere is lost (bridged later), and if it has those corners it becomes a keyframe at its guessed
    pose, so the frames after it are not all lost. At most two registrations and one corner
    extraction per frame: linear in length.
    """
    rel = np.tile(np.eye(4), (T, 1, 1))
    ok = np.zeros(T, bool)
    sweep = np.tile(np.eye(4), (T, 1, 1))  # c2w of registered frames chained through the keyframes (guesses)
    start = next((t for t in range(T) if len(points(t).uv) >= cfg.min_inliers), None)
    if start is None:
        return Sweep(np.zeros(0, int), rel, ok, np.zeros((0, 4, 4)), {})
    ok[start] = True
    kfs: list[int] = [start]
    at_keyframe: dict[int, Registration] = {}
    last = [start]  # the last two registered frames
    direct: tuple[int, Registration] | None = None  # the last frame registered directly to the current keyframe

    for t in range(start + 1, T):
        kf = kfs[-1]
        a, b = last[0], last[-1]
        pred = blend_poses(sweep[a], sweep[b], (t - a) / (b - a)) if a != b else sweep[b]
        r = reg(kf, t, invert_rigid(sweep[kf]) @ pred)
        T_kf_t = r.T_ref_cur if r.ok else None
        weak = not r.ok or r.n_inliers < cfg.keyframe_min_inlier_frac * len(points(kf).uv)
        if weak and direct is not None and len(points(direct[0]).uv) >= cfg.min_inliers:
            new_kf, r_new_kf = direct  # the last well-registered frame becomes a keyframe
            kfs.append(new_kf)
            at_keyframe[len(kfs) - 1] = r_new_kf
            direct = None
            r2 = reg(new_kf, t, invert_rigid(sweep[new_kf]) @ pred)
            if r2.ok:
                r, T_kf_t = r2, r2.T_ref_cur
            elif T_kf_t is not None:  # only the old keyframe holds: express that relative to the new one
                T_kf_t, r = invert_rigid(rel[new_kf]) @ T_kf_t, FAILED
            kf = new_kf
        if T_kf_t is None:  # lost: bridged from its neighbours once all poses are known
            if len(points(t).uv) >= cfg.min_inliers:
                # Textured but unregistered (the view changed too much): the chain restarts from it, its pose
                # guessed at constant velocity, so later frames register to it instead of all being lost
                # against a keyframe they have left behind; the global pass ties it to earlier keyframes.
                kfs.append(t)
                at_keyframe[len(kfs) - 1] = FAILED
                rel[t], sweep[t] = invert_rigid(sweep[kf]) @ pred, pred
                direct = None
            continue
        rel[t], ok[t] = T_kf_t, True
        sweep[t] = sweep[kf] @ T_kf_t
        last = [last[-1], t]
        if r.ok:
            direct = (t, r)
            if t - kf >= cfg.keyframe_every and len(points(t).uv) >= cfg.min_inliers:
                kfs.append(t)  # the periodic keyframe
                at_keyframe[len(kfs) - 1] = r
                direct = None
    kf = np.asarray(kfs)
    return Sweep(kf, rel, ok, sweep[kf], at_keyframe)


def estimate_camera_poses(
    frames: np.ndarray, depth: np.ndarray, K: np.ndarray, cfg: PoseConfig, similarity: bool = False
) -> PoseEstimate:
    """Camera poses of RGB frames (T, H, W, 3) with depth (T, H, W) meters; see the module doc."""
    T = len(frames)

    @functools.lru_cache(maxsize=POINTS_KEPT)
    def points(t: int) -> KeyframePoints:
        """Corners of a keyframe or candidate; recent ones kept (a pure function of the frame: an evicted one is
        made again), so memory does not grow with the video's length."""
        if points.cache_info().misses % BLOCK_FRAMES == 0:
            release(frames, depth)  # mapped (spilled) frames: drop the pages read so far
        return keyframe_points(frames[t], depth[t], K, cfg)

    @functools.lru_cache(maxsize=4)
    def gray(t: int) -> np.ndarray:
        return to_gray(frames[t])

    def reg(ref: int, cur: int, init: np.ndarray) -> Registration:
        r = register(points(ref), gray(cur), K, cfg, init)
        if r.ok and cfg.dense_refine:
            T_ref_cur = dense_refine(frames[ref], depth[ref], frames[cur], depth[cur], K, r.T_ref_cur, cfg)
            r = Registration(T_ref_cur, r.n_inliers, r.information, True)
        return r

    sw = track_keyframes(points, reg, T, cfg)
    kf, rel, rel_ok = sw.keyframes, sw.rel, sw.ok
    if not len(kf):
        lost = np.arange(T)
        return PoseEstimate(np.tile(np.eye(4), (T, 1, 1)), np.ones(T), np.zeros(0), lost, kf, np.ones(T, bool), float("nan"))

    def reg_far(ref: int, cur: int, init: np.ndarray) -> Registration:
        """Registration between keyframes, skipped when the guess says the camera turned too far for it."""
        if turn_deg(init[:3, :3]) > cfg.max_register_deg:
            return FAILED
        return reg(ref, cur, init)

    def reg_kf(i: int, j: int, init: np.ndarray) -> Registration:
        if i == j - 1:  # keyframe j was registered to its predecessor in the sweep
            return sw.at_keyframe[j]
        return reg_far(int(kf[i]), int(kf[j]), init)

    kf_c2w, kf_ok = solve_keyframes(sw.guess, reg_kf, cfg.keyframe_neighbours, cfg.keyframe_far_edges)
    c2w = np.tile(np.eye(4), (T, 1, 1))
    frame_scale = np.ones(T)
    scales = []
    ck = cfg.chunk_keyframes
    for g0 in range(0, len(kf), ck):
        group = [int(a) for a in range(g0, min(g0 + ck, len(kf)))]  # keyframe indices of this chunk
        ref = group[len(group) // 2]
        first = int(kf[group[0]])
        stop = int(kf[group[-1] + 1]) if group[-1] + 1 < len(kf) else T
        local_kf: dict[int, np.ndarray] = {ref: np.eye(4)}
        for a in group:
            if a != ref:
                r = reg_far(int(kf[ref]), int(kf[a]), invert_rigid(kf_c2w[ref]) @ kf_c2w[a])
                if r.ok:
                    local_kf[a] = r.T_ref_cur
        anchors = [a for a in sorted(local_kf) if kf_ok[a]] or [ref]
        fit = fit_chunk(
            np.stack([local_kf[a] for a in anchors]),
            kf_c2w[anchors],
            similarity=similarity,
            outlier_sigma=cfg.anchor_outlier_sigma,
            min_residual_m=cfg.anchor_min_residual_m,
            min_baseline_m=cfg.min_scale_baseline_m,
        )
        for a, inlier in zip(anchors, fit.inliers):
            if not inlier and a != ref:  # its registration to the reference disagrees with the graph: untie it
                del local_kf[a]
        local = np.tile(np.eye(4), (stop - first, 1, 1))
        for t in range(first, stop):
            a = int(np.searchsorted(kf, t, side="right") - 1)  # keyframe at or before t
            base = local_kf.get(a, invert_rigid(kf_c2w[ref]) @ kf_c2w[a])  # untied keyframe: its global pose
            local[t - first] = base if t == kf[a] else base @ rel[t]
        c2w[first:stop] = fit.apply(local)
        if fit.scale_measured:
            scales.append(fit.scale)
            frame_scale[first:stop] = fit.scale
    c2w = bridge(c2w, rel_ok)
    frame_scale = np.interp(np.arange(T), np.flatnonzero(rel_ok), frame_scale[rel_ok])  # bridged: a neighbour's
    c2w = invert_rigid(c2w[0]) @ c2w  # exact identity at frame 0
    lost = np.flatnonzero(~rel_ok)
    textureless = np.array([len(points(int(t)).uv) < cfg.min_inliers for t in lost], bool)
    return PoseEstimate(
        c2w, frame_scale, np.asarray(scales), lost, kf, textureless, step_rotation_deg(c2w, rel_ok)
    )


def frame_list(frames: np.ndarray, most: int = 10) -> str:
    """"4, 5, 9" (at most `most` numbers, then "and N more")."""
    shown = ", ".join(str(int(t)) for t in frames[:most])
    return shown + (f" and {len(frames) - most} more" if len(frames) > most else "")


def bridged_note(lost: np.ndarray, n_frames: int) -> str:
    return f"{len(lost)} of {n_frames} frames bridged from their neighbours (frames {frame_list(lost)})"


def lost_message(est: PoseEstimate, ep: Episode) -> str:
    """Why the camera could not be tracked, and what to try: too little texture or depth in the lost frames,
    or a camera turning too far between stored frames (measured where it was tracked)."""
    head = f"camera tracking lost on {est.n_lost} of {ep.n_frames} frames (frames {frame_list(est.lost)})"
    n_flat = int(est.textureless.sum())
    if n_flat * 2 >= est.n_lost:
        return f"{head}: {n_flat} of them have too little texture or depth (fewer corners with depth than pose.min_inliers)"
    if not est.step_deg >= COMFORTABLE_DEG:  # NaN too: unmeasured
        return f"{head} (too little texture or depth, a camera moving too fast, or much of the view moving?)"
    turn = f"{head}: the camera turns up to {est.step_deg:.0f} deg per stored frame where it was tracked"
    stride = int(np.median(np.diff(ep.frame_index))) if ep.frame_index is not None and len(ep.frame_index) > 1 else 1
    if ep.fps <= 0 or stride <= 1:
        return f"{turn}, every source frame kept already (registration holds up to about {HOLDS_DEG:.0f} deg per frame)"
    want = min(ep.fps * stride, float(np.ceil(ep.fps * est.step_deg / COMFORTABLE_DEG)))
    return f"{turn} (at {ep.fps:g} fps of {ep.fps * stride:g}); keep more frames: --set decode.target_fps={want:g}"


def estimate_poses(ep: Episode, cfg: PoseConfig) -> Episode:
    if cfg.backend == "given":
        if ep.w2c is None:
            raise ConfigurationError(f"{ep.source.uri}/cameras.npz: pose backend 'given' needs cameras.npz with K and w2c (T,4,4)")
        return ep
    if ep.K is None:
        raise ConfigurationError(f"{ep.source.uri}: pose backend 'open3d' needs intrinsics K (cameras.npz or the depth stage)")
    if ep.depth is None or ep.frames is None:
        raise ConfigurationError(f"{ep.source.uri}: pose backend 'open3d' needs depth (given or predicted) and frames")
    similarity = ep.depth_source != "given"
    est = estimate_camera_poses(ep.frames, ep.depth, ep.K, cfg, similarity=similarity)
    if est.n_lost > cfg.max_lost_frac * ep.n_frames:
        raise EpisodeInputError(f"{ep.source.uri}: {lost_message(est, ep)}")
    depth, clean = ep.depth, ep.clean_depth
    if similarity and (est.frame_scale != 1).any():
        depth, clean = empty_like_episode(ep.spill_dir, "depth", ep.depth.shape, np.float32), None
        for lo, hi in blocks(ep.n_frames):
            depth[lo:hi] = ep.depth[lo:hi] * est.frame_scale[lo:hi, None, None]
            release(depth, ep.depth)
    spread = est.scale_spread
    return ep.replace(
        w2c=invert_rigid(est.c2w),
        pose_source="open3d",
        depth=depth,
        clean_depth=clean,
        scale_spread=spread,
        metric_scale_ok=bool(ep.metric_scale_ok and not (spread > cfg.max_scale_spread)),
        meta={**ep.meta, "pose_lost_frames": est.n_lost, "pose_bridged_frames": est.n_lost},
        errors={**ep.errors, NOTE_KEY: bridged_note(est.lost, ep.n_frames)} if est.n_lost else ep.errors,
    )


class Pose(Stage[PoseConfig]):
    """Stage 1b (docs/method.md#stage-1-depth-and-camera-poses): camera poses, given or estimated."""

    name = "pose"

    def settings(self, cfg: IngestConfig) -> PoseConfig:
        return cfg.pose

    def precheck(self, src: EpisodeSource, settings: PoseConfig) -> None:
        if src.kind == "video" and settings.backend == "given":
            raise ConfigurationError(
                f"{src.uri}: a plain video has no cameras, but the config asks for pose='given'; use --pose open3d, "
                "or give an episode directory with cameras.npz"
            )

    def run(self, ep: Episode, settings: PoseConfig) -> Episode:
        return estimate_poses(ep, settings)
