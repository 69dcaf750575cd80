"""Rows -> batches: the contract's shapes and dtypes, masks consistent with the stored flags, targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.bspline import from_targets, render
from storage.torch_loader import LanceTraceDataset
from tasks.train.batches import BatchConfig, SampleToItem, collate, depth_colormap, pick_caption, sample_to_item
from tasks.train.stats import TraceStats, ensure_trace_stats
from tasks.config import get_preset
from tasks.run.ingest import ingest

CFG = BatchConfig(image_size=32, history_len=8, n_ctrl=10, horizon=32, max_keypoints=24, use_depth=True)
CONTRACT = {
    "image": (torch.float32, ("B", 3, 32, 32)),
    "depth_image": (torch.float32, ("B", 3, 32, 32)),
    "has_depth": (torch.bool, ("B",)),
    "keypoints_uv": (torch.float32, ("B", "N", 2)),
    "keypoints_z": (torch.float32, ("B", "N")),
    "keypoint_mask": (torch.bool, ("B", "N")),
    "history": (torch.float32, ("B", "N", 8, 3)),
    "history_mask": (torch.bool, ("B", "N", 8)),
    "target_ctrl": (torch.float32, ("B", "N", 10, 3)),
    "target_valid": (torch.bool, ("B", "N")),
    "future_valid": (torch.bool, ("B", "N", 32)),
    "cluster_id": (torch.int64, ("B", "N")),
    "future_uvz": (torch.float32, ("B", "N", 32, 3)),
    "current_uvz": (torch.float32, ("B", "N", 3)),
}


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("batches") / "traces"
    ingest(str(sim_corpus), str(root), get_preset("sim"))
    return str(root)


def _stats(scale=(0.2, 0.2, 0.05)) -> TraceStats:
    return TraceStats(versions={}, horizon=32, delta_scale=scale, depth_p1=0.5, depth_p99=5.0, depth_from="frames",
                      n_episodes=1, n_samples=1, n_keypoints=1, n_valid_steps=1)


@pytest.mark.parametrize("train", [True, False])
def test_batch_contract_and_masks_match_the_stored_flags(dataset, train):
    stats = ensure_trace_stats(dataset)
    ds = LanceTraceDataset(dataset, split="all", transform=SampleToItem(CFG, stats, train=train, seed=1))
    raw_ds = LanceTraceDataset(dataset, split="all")
    idx = [5, 20, 40]
    batch = collate([ds[i] for i in idx])
    B, N = len(idx), batch["keypoint_mask"].shape[1]
    for key, (dtype, shape) in CONTRACT.items():
        want = tuple(B if s == "B" else N if s == "N" else s for s in shape)
        assert batch[key].dtype == dtype and tuple(batch[key].shape) == want, key
        if dtype == torch.float32:
            assert torch.isfinite(batch[key]).all(), key
    assert len(batch["text"]) == B and all(isinstance(t, str) and t for t in batch["text"])
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1 and batch["image"].std() > 0.05
    assert (batch["keypoints_uv"].abs() <= 1).all()
    for b, i in enumerate(idx):
        raw = raw_ds[i]
        m = batch["keypoint_mask"][b].numpy()
        n = int(m.sum())
        assert 1 <= n <= CFG.max_keypoints
        # each picked keypoint is a stored one; its flags are the stored flags at steps 1..H
        W, H = raw["episode"]["width"], raw["episode"]["height"]
        stored_uv = (raw["keypoints_uv"] + 0.5) / [W, H] * 2 - 1
        for k in range(n):
            j = np.flatnonzero(np.all(np.abs(stored_uv - batch["keypoints_uv"][b, k].numpy()) < 1e-5, axis=1))[0]
            np.testing.assert_array_equal(batch["future_valid"][b, k].numpy(), raw["future_valid"][j, 1:33])
            hv = raw["history_valid"][j, 1:9][::-1]
            assert not (batch["history_mask"][b, k].numpy() & ~hv).any()  # never unmasks an invalid step
            if not train:
                np.testing.assert_array_equal(batch["history_mask"][b, k].numpy(), hv)
            # the D-valid-steps rule: a target when it holds (keypoints are drawn from those if any does)
            assert bool(batch["target_valid"][b, k]) == (raw["future_valid"][j, 1:33].sum() >= CFG.n_ctrl)
        usable = (raw["future_valid"][:, 1:33].sum(1) >= CFG.n_ctrl).any()
        assert batch["target_valid"][b, :n].all() == usable and not batch["target_valid"][b, n:].any()
        assert not batch["future_valid"][b, n:].any() and (batch["cluster_id"][b, n:] == -1).all()
    assert batch["target_ctrl"].abs().max() <= CFG.fit_clip + 1e-6


def test_history_is_oldest_to_newest_and_anchor_relative():
    """A keypoint moving +1 px per frame: history ends at t-1 (-1 px) and starts at t-h (-h px)."""
    L, Lh, W, H = 40, 16, 100, 80
    t_fwd = np.arange(L, dtype=np.float32)
    fut = np.stack([50 + t_fwd, 40 + 0 * t_fwd, 2 + 0 * t_fwd], -1)[None]
    hist = np.stack([50 - np.arange(Lh, dtype=np.float32), 40 + 0 * np.arange(Lh), 2 + 0 * np.arange(Lh)], -1)[None]
    raw = {
        "episode_id": "e", "frame": 0, "keypoints_uv": np.array([[50, 40]], np.float32),
        "future": fut, "future_valid": np.ones((1, L), bool), "history": hist, "history_valid": np.ones((1, Lh), bool),
        "cluster_id": np.zeros(1, np.int64), "image": np.zeros((H, W, 3), np.uint8), "depth": None,
        "episode": {"width": W, "height": H, "instruction": "push it"}, "captions": [],
    }
    item = sample_to_item(raw, CFG, _stats(), np.random.default_rng(0), train=False, n_keypoints=4)
    du = 2.0 / W  # one pixel in normalised u
    np.testing.assert_allclose(item["history"][0, :, 0], -du * np.arange(8, 0, -1), rtol=1e-5)
    np.testing.assert_allclose(item["future_uvz"][0, :, 0] - item["current_uvz"][0, 0], du * np.arange(1, 33), rtol=1e-5)
    assert item["history_mask"].all() and item["text"] == "push it" and not item["has_depth"]


def test_fitted_control_points_reproduce_a_smooth_future():
    """Targets rendered from the fitted control points come back within a small tolerance."""
    L, W, H = 64, 320, 240
    s = np.linspace(0, 1, L, dtype=np.float64)
    fut = np.stack([100 + 60 * s + 20 * s**2, 120 - 40 * s**2, 1.0 + 0.2 * s], -1)
    fut = np.stack([fut, fut + [5, 5, 0]]).astype(np.float32)
    raw = {
        "episode_id": "e", "frame": 0, "keypoints_uv": fut[:, 0, :2].copy(), "future": fut,
        "future_valid": np.ones((2, L), bool), "history": fut[:, :4], "history_valid": np.zeros((2, 4), bool),
        "cluster_id": np.zeros(2, np.int64), "image": np.zeros((H, W, 3), np.uint8), "depth": None,
        "episode": {"width": W, "height": H, "instruction": ""}, "captions": [],
    }
    stats = _stats((0.3, 0.3, 0.1))
    item = sample_to_item(raw, CFG, stats, np.random.default_rng(0), train=False, n_keypoints=4)
    curve = from_targets(render(torch.from_numpy(item["target_ctrl"]), 32), torch.from_numpy(item["current_uvz"]),
                         stats.delta_scale)
    err = (curve.numpy() - item["future_uvz"])
    assert np.abs(err[..., :2]).max() < 0.01  # normalised uv: < 1.6 px at 320 px
    assert np.abs(err[..., 2]).max() < 0.005  # meters


def test_train_augmentation_is_seeded_and_does_drop():
    stats = _stats()
    L = 40
    raw = {
        "episode_id": "e", "frame": 3, "keypoints_uv": np.full((30, 2), 20, np.float32),
        "future": np.tile(np.linspace([20, 20, 1], [40, 30, 1.2], L, dtype=np.float32), (30, 1, 1)),
        "future_valid": np.ones((30, L), bool), "history": np.tile(np.linspace([20, 20, 1], [10, 15, 1], 16, dtype=np.float32), (30, 1, 1)),
        "history_valid": np.ones((30, 16), bool), "cluster_id": np.zeros(30, np.int64),
        "image": np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8),
        "depth": np.full((48, 64), 1.5, np.float32), "episode": {"width": 64, "height": 48, "instruction": "go"},
        "captions": [{"start_frame": 0, "end_frame": 5, "instruction_1": "a", "instruction_2": "b", "instruction_3": "c"}],
    }
    tf = SampleToItem(CFG, stats, train=True, seed=7)
    a, b = tf(raw, 0, 1), tf(raw, 0, 1)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["history_mask"], b["history_mask"])
    items = [tf(raw, 0, d) for d in range(200)]
    all_masked = np.mean([not it["history_mask"].any() for it in items])
    with_depth = np.mean([it["has_depth"] for it in items])
    assert 0.4 < all_masked < 0.75  # 0.5 whole-sample + 0.5 * 0.3^24 (negligible)
    assert 0.2 < with_depth < 0.4  # depth dropout 0.7
    kept = np.mean([it["history_mask"][:, -1].mean() for it in items if it["history_mask"].any()])
    assert 0.6 < kept < 0.8  # per-keypoint dropout 0.3
    assert {it["text"] for it in items} == {"a", "b", "c"}  # captions covering frame 3 win over the instruction
    assert not np.array_equal(items[0]["image"], items[1]["image"])  # colour jitter


def test_depth_colormap_near_is_bright_end_and_unknown_black():
    d = np.array([[0.5, 5.0, 0.0]], np.float32)
    rgb = depth_colormap(d, 0.5, 5.0).astype(int)
    assert rgb[0, 2].sum() == 0
    assert not np.array_equal(rgb[0, 0], rgb[0, 1])
    assert pick_caption({"captions": [], "episode": {"instruction": ""}}, np.random.default_rng(0)) == ""
