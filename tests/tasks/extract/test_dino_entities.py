"""The `dino` keypoint backend: entities from synthetic feature maps with known groups, the METHOD.md stage 2
budget and coverage rules, and the whole selection on a tiny random DINOv2 saved with save_pretrained."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from models.dino_patches import save_random_dinov2
from tasks.errors import ConfigurationError
from tasks.config import DinoConfig
from tasks.extract.dino_entities import (
    assign_patches,
    bipartite_merge,
    covered_patches,
    keypoint_budget,
    select_dino_keypoints,
    select_from_features,
    spread_points,
    temporal_entities,
)

C = 64


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def block_labels(h=16, w=16, groups=4, shift=0):
    """Known groups in spatial blocks: right half, bottom-left, top-left, and a vertical bar (4th group)."""
    lab = np.zeros((h, w), np.int64)
    lab[:, w // 2 :] = 1
    lab[h // 2 :, : w // 3] = 2
    if groups > 3:
        lab[h // 4 : 3 * h // 4, w // 2 - 2 : w // 2 + 3] = 3
    return np.roll(lab, shift, axis=1)


def group_vectors(n, rng):
    return unit(rng.normal(size=(n, C)))


def feature_map(lab, vectors, rng, noise=0.7):
    return unit(vectors[lab] + noise * rng.normal(size=(*lab.shape, C)) / np.sqrt(C)).astype(np.float32)


def agreement(truth, found):
    """Fraction of patches whose label matches under the best one-to-one matching of labels (Hungarian)."""
    ut, uf = np.unique(truth), np.unique(found)
    m = np.array([[np.sum((truth == i) & (found == j)) for j in uf] for i in ut])
    r, c = linear_sum_assignment(-m)
    return m[r, c].sum() / truth.size


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("groups", [3, 4])
def test_bipartite_merging_recovers_known_groups(seed, groups):
    rng = np.random.default_rng(seed)
    lab = block_labels(groups=groups)
    f = feature_map(lab, group_vectors(groups, rng), rng).reshape(-1, C)
    m = bipartite_merge(f, target=groups, rounds=None, min_cos=0.5)
    assert len(m.centroids) == groups and m.sizes.sum() == f.shape[0]
    assert agreement(lab.ravel(), m.labels) >= 0.95
    # the centroids are the groups' directions
    best = np.max(m.centroids @ group_vectors(groups, np.random.default_rng(seed)).T, axis=0)
    assert best.min() > 0.95, best


def test_published_schedule_over_segments_but_never_mixes_groups():
    """11 rounds of 25% leave 12 of 256 tokens; each must lie (almost) inside one known group."""
    rng = np.random.default_rng(7)
    lab = block_labels()
    m = bipartite_merge(feature_map(lab, group_vectors(4, rng), rng).reshape(-1, C))
    assert len(m.centroids) == 12  # 256 -> 192 -> 144 -> 108 -> 81 -> 61 -> 46 -> 35 -> 27 -> 21 -> 16 -> 12
    purity = sum(np.bincount(lab.ravel()[m.labels == k]).max() for k in range(12)) / lab.size
    assert purity >= 0.95, purity


def test_temporal_entities_keep_ids_as_groups_move_and_add_one_for_a_new_group():
    rng = np.random.default_rng(3)
    vectors = group_vectors(4, rng)
    maps = [block_labels(groups=3, shift=s) for s in (0, 2, 4)] + [block_labels(groups=4, shift=5)]
    feats = np.stack([feature_map(lab, vectors, rng) for lab in maps])
    merges = [bipartite_merge(f.reshape(-1, C), rounds=None, min_cos=0.5) for f in feats]  # threshold alone stops
    ids, centroids = temporal_entities([m.centroids for m in merges], [m.sizes for m in merges], new_entity_cos=0.2)
    assert len(centroids) == 4
    labels = assign_patches(feats, centroids)
    global_of = {}
    for t, lab in enumerate(maps):
        for g in np.unique(lab):
            found = np.bincount(labels[t][lab == g]).argmax()
            assert np.mean(labels[t][lab == g] == found) >= 0.95
            global_of.setdefault(g, found)
            assert global_of[g] == found, f"group {g} changed id at frame {t}"
    assert sorted(global_of.values()) == [0, 1, 2, 3]
    assert global_of[3] == 3 and 3 not in np.concatenate(ids[:3])  # the new group is a new entity, at frame 3
    for t, (m, lab) in enumerate(zip(merges, maps)):  # every frame entity got the id of the group it covers
        for k in range(len(m.centroids)):
            assert ids[t][k] == global_of[np.bincount(lab.ravel()[m.labels == k]).argmax()], (t, k)
    # the published variant (first centroids kept) agrees here
    ids_first, _ = temporal_entities([m.centroids for m in merges], [m.sizes for m in merges], 0.2,
                                     running_update=False)
    assert all(np.array_equal(a, b) for a, b in zip(ids, ids_first))


def test_budget_follows_patch_shares_and_drops_frames_below_one():
    counts = np.array([[6, 100, 1], [3, 1, 1], [2, 0, 1], [1, 0, 1]])  # (frames, entities)
    budget = keypoint_budget(counts, 48)
    assert budget[:, 0].tolist() == [24, 12, 8, 4]  # shares 1/2, 1/4, 1/6, 1/12 of 48
    assert budget[:, 1].tolist() == [48, 0, 0, 0]  # 48·1/101 = 0.48 rounds below 1: that frame gets none
    assert budget[:, 2].tolist() == [12, 12, 12, 12]
    assert budget.sum(0).tolist() == [48, 48, 48]
    # METHOD.md line 41 rounds each frame's share, so the sum is only the total up to rounding: 4 × round(2.5) = 8
    assert keypoint_budget(np.ones((4, 1)), 10)[:, 0].tolist() == [2, 2, 2, 2]
    assert keypoint_budget(np.zeros((3, 1)), 48).sum() == 0


def test_kmeans_spread_points_fall_inside_the_entity_and_follow_the_frame_budget():
    rng = np.random.default_rng(0)
    region = np.zeros((16, 16), bool)
    region[0:16, 0:6] = True  # an L: a bar and a foot
    region[10:16, 0:16] = True
    cells = np.argwhere(region)
    pooled = np.concatenate([cells, cells]), np.repeat([0, 5], len(cells))  # present in frames 0 and 5
    cell_px = (3.5, 5.0)  # a 56x80 frame on a 16x16 grid
    uv, frames = spread_points(*pooled, {0: 6, 5: 2}, cell_px, rng)
    assert uv.dtype == np.float32 and len(uv) == 8 and sorted(frames.tolist()) == [0] * 6 + [5] * 2
    col = np.floor((uv[:, 0] + 0.5) / cell_px[1]).astype(int)
    row = np.floor((uv[:, 1] + 0.5) / cell_px[0]).astype(int)
    assert region[row, col].all()  # every point inside a cell of the entity
    picked = np.stack([row, col], 1)
    assert len(np.unique(picked, axis=0)) == 8  # distinct cells
    # k-means spreads them: every cell of the L is within 4.3 cells of a pick (30 seeds measured: <= 4.24;
    # 8 uniformly random cells: >= 4.47, median 6.2)
    radius = np.max(np.min(np.linalg.norm(cells[:, None] - picked[None], axis=-1), axis=1))
    assert radius <= 4.3, radius


def test_jitter_is_uniform_inside_the_patch_cell():
    rng = np.random.default_rng(1)
    cells = np.array([[r, c] for r in range(16) for c in range(16)])
    cell_px = (3.5, 5.0)
    uv, _ = spread_points(cells, np.zeros(len(cells), int), {0: 256}, cell_px, rng)
    col = np.floor((uv[:, 0] + 0.5) / cell_px[1]).astype(int)
    row = np.floor((uv[:, 1] + 0.5) / cell_px[0]).astype(int)
    assert sorted(zip(row.tolist(), col.tolist())) == sorted(map(tuple, cells.tolist()))  # one point per cell
    off = np.stack([(uv[:, 1] + 0.5) / cell_px[0] - row, (uv[:, 0] + 0.5) / cell_px[1] - col], 1)
    assert (off >= 0).all() and (off < 1).all()
    assert abs(off.mean() - 0.5) < 0.05 and 0.25 < off.std() < 0.33  # uniform: std 1/√12 = 0.289
    assert uv[:, 0].min() >= -0.5 and uv[:, 0].max() < 80 - 0.5 and uv[:, 1].max() < 56 - 0.5


def synthetic_features(T=3, seed=0):
    rng = np.random.default_rng(seed)
    vectors = group_vectors(4, rng)
    return np.stack([feature_map(block_labels(shift=t), vectors, rng) for t in range(T)])


SYNTH = DinoConfig(entities_per_frame=4, merge_rounds=50, merge_min_cos=0.5, points_per_entity=16, every_k=2)


def test_selection_on_synthetic_features_gives_each_entity_its_budget():
    feats = synthetic_features()
    kp = select_from_features(np.array([0, 2, 4]), feats, (3.5, 3.5), SYNTH)
    counts = np.stack([np.bincount(lab.ravel(), minlength=4) for lab in kp.labels])
    assert np.bincount(kp.entity).tolist() == keypoint_budget(counts, 16).sum(0).tolist()
    assert len(np.unique(kp.labels)) == 4 and len(kp.uv) >= 4 * 15  # 3 frames of about 16/3 -> 5 each
    assert set(kp.query_frame.tolist()) <= {0, 2, 4} and kp.uv.dtype == np.float32
    t = np.searchsorted(kp.frame_ids, kp.query_frame)
    col = np.floor((kp.uv[:, 0] + 0.5) / 3.5).astype(int)
    row = np.floor((kp.uv[:, 1] + 0.5) / 3.5).astype(int)
    assert (kp.labels[t, row, col] == kp.entity).all()  # each point sits on its entity in its query frame


def test_covered_patches_get_no_points_and_the_budget_shrinks_by_the_uncovered_fraction():
    feats = synthetic_features()
    covered = np.zeros((16, 16), bool)
    covered[:, :8] = True  # half the cells hold visible tracks
    kp = select_from_features(np.array([0, 2, 4]), feats, (3.5, 3.5), SYNTH, covered=covered)
    col = np.floor((kp.uv[:, 0] + 0.5) / 3.5).astype(int)
    row = np.floor((kp.uv[:, 1] + 0.5) / 3.5).astype(int)
    assert len(kp.uv) and not covered[row, col].any()
    counts = np.bincount(kp.entity, minlength=4)
    # 16 points x 1/2 uncovered each; an entity wholly under the covered half gets none
    assert counts.max() == 8 and set(counts.tolist()) <= {0, 8}
    everything = select_from_features(np.array([0, 2, 4]), feats, (3.5, 3.5), SYNTH, covered=np.ones((16, 16), bool))
    assert len(everything.uv) == 0


def test_covered_patches_from_visible_tracks_use_a_3x3_dilation():
    cov = covered_patches(np.array([[40.0, 20.0], [np.nan, 3.0], [500.0, 5.0]]), (16, 16), (56, 80))
    row, col = int((20 + 0.5) * 16 / 56), int((40 + 0.5) * 16 / 80)
    expect = np.zeros((16, 16), bool)
    expect[row - 1 : row + 2, col - 1 : col + 2] = True
    assert np.array_equal(cov, expect)  # NaN and off-image points cover nothing


def test_settings_are_frozen_and_validated():
    with pytest.raises(Exception):
        SYNTH.every_k = 3
    with pytest.raises(Exception):
        DinoConfig(merge_ratio=0.9)


def scene_frames(T=5, H=56, W=56):
    """A grey table, a red block moving right and a fixed blue one: real pixels for the random DINOv2."""
    rng = np.random.default_rng(0)
    frames = np.full((T, H, W, 3), 120, np.uint8) + rng.integers(0, 10, (T, H, W, 3), dtype=np.uint8)
    for t in range(T):
        frames[t, 10:26, 4 + 3 * t : 20 + 3 * t] = (200, 30, 30)
        frames[t, 34:50, 30:50] = (30, 40, 190)
    return frames


@pytest.mark.parametrize("processor", [True, False])
def test_select_dino_keypoints_end_to_end_on_a_tiny_random_dinov2(tmp_path, monkeypatch, processor):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = str(save_random_dinov2(tmp_path / "dino", with_processor=processor))
    frames = scene_frames()
    s = DinoConfig(model=model_dir, device="cpu", input_size=112, every_k=2, points_per_entity=8)
    kp = select_dino_keypoints(frames, s)
    assert kp.frame_ids.tolist() == [0, 2, 4] and kp.labels.shape == (3, 8, 8)
    n = len(kp.uv)
    assert n > 0 and kp.uv.shape == (n, 2) and kp.query_frame.shape == kp.entity.shape == (n,)
    assert kp.uv.dtype == np.float32 and kp.entity.dtype == np.int32
    assert (kp.uv >= -0.5).all() and (kp.uv < 55.5).all()
    assert set(kp.query_frame.tolist()) <= {0, 2, 4}
    t = np.searchsorted(kp.frame_ids, kp.query_frame)
    cell = 56 / 8
    col, row = (np.floor((kp.uv + 0.5) / cell).astype(int)).T
    assert (kp.labels[t, row, col] == kp.entity).all()
    counts = np.stack([np.bincount(lab.ravel(), minlength=kp.labels.max() + 1) for lab in kp.labels])
    budget = keypoint_budget(counts, 8)
    distinct = [len(np.unique(np.argwhere(kp.labels[budget[:, e] > 0] == e)[:, 1:], axis=0))
                for e in range(budget.shape[1])]
    expect = np.minimum(budget.sum(0), distinct)  # an entity on fewer cells than its budget gets one point per cell
    assert np.bincount(kp.entity, minlength=len(expect)).tolist() == expect.tolist()
    covered = np.zeros((8, 8), bool)
    covered[:4] = True
    half = select_dino_keypoints(frames, s, covered=covered)
    assert not covered[np.floor((half.uv[:, 1] + 0.5) / cell).astype(int),
                       np.floor((half.uv[:, 0] + 0.5) / cell).astype(int)].any()


def test_a_missing_model_directory_names_the_setting(tmp_path):
    (tmp_path / "empty").mkdir()
    for where, what in [(tmp_path / "empty", "has no config.json"), (tmp_path / "nowhere", "does not exist")]:
        s = DinoConfig(model=str(where), device="cpu")
        with pytest.raises(ConfigurationError, match=what) as err:
            select_dino_keypoints(scene_frames(T=1), s)
        assert str(where) in str(err.value) and "keypoints.dino.model" in str(err.value)


def test_a_hub_id_offline_fails_fast_and_says_how_to_point_at_a_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ConfigurationError) as err:
        select_dino_keypoints(scene_frames(T=1), DinoConfig(model="facebook/dinov2-not-cached"))
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "facebook/dinov2-not-cached" in msg and "keypoints.dino.model=DIR" in msg and "HF_HUB_OFFLINE" in msg
