"""Stage 2, `dino` backend: keypoints from DINOv2 "interaction entities" (docs/method.md#stage-2-keypoint-proposal).

The published recipe (METHOD.md stage 2, lines 39-45), step by step:
1. Patch features of one frame in every `every_k` (line 39; `models/dino_patches.py`).
2. Per frame, ToMe bipartite soft matching: `merge_rounds` rounds, each folding `merge_ratio` of the tokens
   into their most similar partner (line 40) -> `bipartite_merge`.
3. Across frames, a frame's entity whose cosine to every running entity is below `new_entity_cos` starts a
   new one (line 40) -> `temporal_entities`; then every patch joins its most similar entity -> `assign_patches`.
4. Each entity gets `points_per_entity` keypoints, shared among frames by its patch count there; a frame whose
   share rounds below 1 gets none (line 41) -> `keypoint_budget`.
5. The entity's candidate cells are pooled over frames, k-means picks K spread-out cells, each pick goes back
   to a source frame and is jittered uniformly inside its cell (line 42) -> `spread_points`. Every keypoint
   keeps its own query frame (line 43).
6. Patches covered by visible tracks (3×3 dilation) get no keypoints, and both the per-entity budget and the
   merge ratio shrink by the uncovered fraction (line 45) -> `covered_patches`, `select_from_features`.

Differences, on purpose:
- Tokens merge by size-weighted means (ToMe); the published code averages a destination with its sources
  without their sizes. `merge_min_cos` and `entities_per_frame` can stop merging early (off by default); when
  a threshold is set and the round's A/B split offers no pair above it, the globally most similar pair is
  merged instead (a split can put both halves of a group on the same side).
- Running entity centroids are size-weighted means of the frame entities matched to them; the published code
  keeps each entity's first centroid (`running_update=False` does that).
- A k-means pick goes to the frame, among those where its cell belongs to the entity, with the most budget
  left, so the per-frame counts follow the budget where the cells allow (published: the nearest pooled entry
  of a KD-tree, ties between frames broken arbitrarily).
- `max_points` caps the total (the classical backend's cap); entities then share it equally.
Pixels follow docs/architecture.md#conventions: (u, v) with the origin at the centre of the top-left pixel.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.ndimage import binary_dilation

from tasks.config import DinoConfig
from tasks.errors import ConfigurationError


class Merge(NamedTuple):
    labels: np.ndarray  # (N,) int64: entity of each token, 0..k-1
    centroids: np.ndarray  # (k, C) float32, unit length
    sizes: np.ndarray  # (k,) int64: tokens per entity


class DinoKeypoints(NamedTuple):
    uv: np.ndarray  # (n, 2) float32 pixels
    query_frame: np.ndarray  # (n,) int64: frame index (of the frames given) each point is seeded in
    entity: np.ndarray  # (n,) int32: the track's cluster_id
    frame_ids: np.ndarray  # (T',) int64: the sampled frames
    labels: np.ndarray  # (T', h, w) int32: entity of every patch of the sampled frames


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def bipartite_merge(
    features: np.ndarray,
    target: int | None = None,
    *,
    ratio: float = 0.25,
    rounds: int | None = 11,
    min_cos: float = -1.0,
) -> Merge:
    """ToMe bipartite soft matching of one frame's tokens `features` (N, C), in raster order.

    Each round splits the tokens alternately into A and B (ordered by their first patch), matches every A token
    to its most cosine-similar B token and folds the `max(1, ⌊ratio·n⌋)` best pairs into their B token
    (size-weighted mean). Stops after `rounds` rounds (None: no limit), at `target` tokens, or when no pair
    reaches `min_cos`.
    """
    n_tok = len(features)
    sums = np.asarray(features, np.float64).copy()
    sizes = np.ones(n_tok, np.int64)
    first = np.arange(n_tok)
    owner = np.arange(n_tok)  # patch -> token
    done = 0
    while len(sums) > max(target or 1, 1) and (rounds is None or done < rounds):
        n = len(sums)
        r = max(1, int(n * ratio))
        if target:
            r = min(r, n - target)
        dirs = _unit(sums)
        a, b = np.arange(0, n, 2), np.arange(1, n, 2)
        scores = dirs[a] @ dirs[b].T
        best = scores.argmax(1)
        node = scores[np.arange(len(a)), best]
        pick = np.argsort(-node, kind="stable")[:r]
        pick = pick[node[pick] >= min_cos]
        if len(pick):
            src, dst = a[pick], b[best[pick]]
        else:  # the split separated every similar pair: take the globally most similar one
            sim = dirs @ dirs.T
            np.fill_diagonal(sim, -np.inf)
            i, j = np.unravel_index(np.argmax(sim), sim.shape)
            if sim[i, j] < min_cos:
                break
            src, dst = np.array([max(i, j)]), np.array([min(i, j)])
        np.add.at(sums, dst, sums[src])
        np.add.at(sizes, dst, sizes[src])
        np.minimum.at(first, dst, first[src])
        remap = np.arange(n)
        remap[src] = dst
        keep = np.ones(n, bool)
        keep[src] = False
        new_index = np.cumsum(keep) - 1
        sums, sizes, first = sums[keep], sizes[keep], first[keep]
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        sums, sizes, first = sums[order], sizes[order], first[order]
        owner = rank[new_index[remap[owner]]]
        done += 1
    return Merge(owner.astype(np.int64), _unit(sums).astype(np.float32), sizes)


def temporal_entities(
    centroids: list[np.ndarray],
    sizes: list[np.ndarray] | None = None,
    new_entity_cos: float = 0.2,
    running_update: bool = True,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-frame entity centroids [(k_t, C)] -> (global id of each frame entity [(k_t,)], global centroids (G, C)).

    Frames are taken in order. A frame entity joins the running entity it is most cosine-similar to, unless
    that similarity is below `new_entity_cos`: then it starts a new one. Matching uses the running centroids
    as they were before the frame; then they become size-weighted means of all entities matched to them.
    """
    sizes = sizes if sizes is not None else [np.ones(len(c)) for c in centroids]
    dim = next((c.shape[1] for c in centroids if c.ndim == 2), 0)
    sums = np.zeros((0, dim))
    ids_per_frame = []
    for cent, size in zip(centroids, sizes):
        cent = _unit(np.asarray(cent, np.float64))
        ids = np.full(len(cent), -1, np.int64)
        if len(sums) and len(cent):
            sim = cent @ _unit(sums).T
            best = sim.argmax(1)
            matched = sim[np.arange(len(cent)), best] >= new_entity_cos
            ids[matched] = best[matched]
        new = ids < 0
        ids[new] = len(sums) + np.arange(new.sum())
        weights = np.asarray(size, np.float64)[:, None] * cent
        sums = np.concatenate([sums, weights[new]])
        if running_update and (~new).any():
            np.add.at(sums, ids[~new], weights[~new])
        ids_per_frame.append(ids)
    return ids_per_frame, _unit(sums).astype(np.float32)


def assign_patches(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """features (..., C) unit, centroids (G, C) unit -> (...) int32: the most cosine-similar entity of each patch."""
    return np.argmax(features @ centroids.T, axis=-1).astype(np.int32)


def keypoint_budget(patch_counts: np.ndarray, per_entity: int) -> np.ndarray:
    """patch_counts (T', E) -> keypoints (T', E) int: `per_entity` shared among frames by patch count.

    METHOD.md stage 2, line 41: "They are spread over frames in proportion to the cluster's patch count in each
    frame; frames whose share rounds below 1 get none." So n[t, e] = round(per_entity · c[t, e] / Σ_t c[t, e])
    (half to even, as Python's round), 0 when that is below 1. The column sums are `per_entity` up to rounding.
    """
    counts = np.asarray(patch_counts, np.float64)
    total = counts.sum(0, keepdims=True)
    share = np.divide(per_entity * counts, total, out=np.zeros_like(counts), where=total > 0)
    return np.rint(share).astype(np.int64)  # rint(x) < 1 is 0


def spread_points(
    cells: np.ndarray,
    frames: np.ndarray,
    quota: dict[int, int],
    cell_px: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One entity's candidate cells pooled over frames -> (uv (k, 2) float32, query frame (k,)).

    cells (M, 2) int (row, col) on the patch grid, frames (M,) their frame; quota {frame: keypoints}.
    k = min(Σ quota, distinct cells). k-means on the pooled cells (a cell present in several frames counts
    that often) picks k distinct cells (the member cell nearest each centre); each goes to the frame, among
    those holding it, with the most quota left; the point lies uniformly inside the cell.
    """
    k = min(int(sum(quota.values())), len(np.unique(cells, axis=0)) if len(cells) else 0)
    if k <= 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    pool = cells.astype(np.float64)
    uniq, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty cluster is handled below
        centres, label = kmeans2(pool, k, minit="++", rng=rng)
    used = np.zeros(len(uniq), bool)
    picked = []
    for j in range(k):
        member = np.zeros(len(uniq), bool)
        member[inverse[label == j]] = True
        choice = member & ~used if (member & ~used).any() else ~used
        d = np.where(choice, np.linalg.norm(uniq - centres[j], axis=1), np.inf)
        i = int(np.argmin(d))
        used[i] = True
        picked.append(i)
    left = dict(quota)
    out_frames = np.empty(k, np.int64)
    for n, i in enumerate(picked):
        holders = np.unique(frames[inverse == i])
        f = max(holders, key=lambda t: (left.get(int(t), 0), -t))
        out_frames[n] = f
        left[int(f)] = left.get(int(f), 0) - 1
    rc = uniq[picked].astype(np.float64) + rng.uniform(0.0, 1.0, size=(k, 2))
    uv = np.stack([rc[:, 1] * cell_px[1], rc[:, 0] * cell_px[0]], -1) - 0.5  # cell (r, c) spans [c·w, (c+1)·w) - 0.5
    return uv.astype(np.float32), out_frames


def covered_patches(
    uv: np.ndarray, grid_hw: tuple[int, int], frame_hw: tuple[int, int], dilation: int = 1
) -> np.ndarray:
    """Visible track pixels uv (n, 2) of one frame -> (h, w) bool: patch cells holding a point, grown by `dilation`."""
    h, w = grid_hw
    H, W = frame_hw
    cov = np.zeros((h, w), bool)
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    uv = uv[np.isfinite(uv).all(1)]
    if len(uv):
        col = np.floor((uv[:, 0] + 0.5) * w / W).astype(np.int64)
        row = np.floor((uv[:, 1] + 0.5) * h / H).astype(np.int64)
        ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        cov[row[ok], col[ok]] = True
    if dilation and cov.any():
        cov = binary_dilation(cov, np.ones((3, 3), bool), iterations=dilation)
    return cov


def _covered_per_frame(covered: np.ndarray | None, frame_ids: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    n = len(frame_ids)
    if covered is None:
        return np.zeros((n, *grid), bool)
    covered = np.asarray(covered, bool)
    if covered.shape == grid:
        return np.broadcast_to(covered, (n, *grid))
    if covered.ndim == 3 and covered.shape[1:] == grid:
        if len(covered) == n:
            return covered
        if len(covered) > frame_ids.max(initial=0):
            return covered[frame_ids]
    raise ValueError(
        f"covered must be (h, w) = {grid}, or (T', h, w) for the {n} sampled frames, or (T, h, w) for all frames; "
        f"got {covered.shape}"
    )


def select_from_features(
    frame_ids: np.ndarray,
    features: np.ndarray,
    cell_px: tuple[float, float],
    settings: DinoConfig,
    covered: np.ndarray | None = None,
) -> DinoKeypoints:
    """Steps 2-6 on patch features (T', h, w, C) unit of frames `frame_ids`; cell_px = (height, width) of a cell."""
    frame_ids = np.asarray(frame_ids, np.int64)
    T, h, w, C = features.shape
    cov = _covered_per_frame(covered, frame_ids, (h, w))
    uncovered = 1.0 - float(cov.mean()) if cov.size else 1.0
    ratio = settings.merge_ratio * uncovered  # line 45: both shrink by the uncovered fraction
    per_entity = int(round(settings.points_per_entity * uncovered))
    flat = features.reshape(T, h * w, C)
    merges = [
        bipartite_merge(f, settings.entities_per_frame, ratio=ratio, rounds=settings.merge_rounds,
                        min_cos=settings.merge_min_cos)
        for f in flat
    ]
    _, centroids = temporal_entities([m.centroids for m in merges], [m.sizes for m in merges], settings.new_entity_cos)
    labels = assign_patches(features, centroids) if len(centroids) else np.zeros((T, h, w), np.int32)
    G = len(centroids)
    counts = np.stack([np.bincount(labels[t][~cov[t]], minlength=G) for t in range(T)]) if T else np.zeros((0, G))
    present = int((counts.sum(0) > 0).sum())
    per_entity = min(per_entity, settings.max_points // max(present, 1))
    budget = keypoint_budget(counts, per_entity)
    rng = np.random.default_rng(settings.seed)
    uv, qf, ent = [], [], []
    for e in range(G):
        frames_e = np.flatnonzero(budget[:, e])
        if not len(frames_e):
            continue
        cells, owners = [], []
        for t in frames_e:
            rc = np.argwhere((labels[t] == e) & ~cov[t])
            cells.append(rc)
            owners.append(np.full(len(rc), t))
        quota = {int(t): int(budget[t, e]) for t in frames_e}
        p, f = spread_points(np.concatenate(cells), np.concatenate(owners), quota, cell_px, rng)
        uv.append(p)
        qf.append(frame_ids[f])
        ent.append(np.full(len(p), e, np.int32))
    if not uv:
        none = np.zeros((0, 2), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int32)
        return DinoKeypoints(*none, frame_ids, labels)
    uv, qf, ent = np.concatenate(uv), np.concatenate(qf), np.concatenate(ent)
    if len(uv) > settings.max_points:
        keep = np.sort(rng.choice(len(uv), settings.max_points, replace=False))
        uv, qf, ent = uv[keep], qf[keep], ent[keep]
    order = np.argsort(qf, kind="stable")
    return DinoKeypoints(uv[order], qf[order], ent[order], frame_ids, labels)


def select_dino_keypoints(
    frames: np.ndarray, settings: DinoConfig, covered: np.ndarray | None = None
) -> DinoKeypoints:
    """frames (T, H, W, 3) uint8 RGB -> DINOv2-entity keypoints with their query frames and entity ids.

    `covered` (h, w), (T', h, w) or (T, h, w) bool on the patch grid (see `covered_patches`) marks cells that
    visible tracks already hold. A model that cannot be loaded is a ConfigurationError naming the setting.
    """
    from models.dino_patches import DinoModelUnavailable, load_dinov2

    try:
        model = load_dinov2(settings.model, settings.device)
    except DinoModelUnavailable as exc:
        raise ConfigurationError(str(exc)) from exc
    pf = model.patch_features(frames, settings.every_k, settings.input_size, settings.batch_size)
    return select_from_features(pf.frame_ids, pf.features, pf.cell_px, settings, covered)
