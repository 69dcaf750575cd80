"""Baselines on hand-built batches: zero motion, constant velocity, nearest-neighbour retrieval."""

from __future__ import annotations

import numpy as np
import torch

from tasks.train.baselines import NearestNeighbour, predict_constant_velocity, predict_zero_motion
from tasks.train.metrics import evaluate_traces


def _batch(current, future, history=None, hvalid=None, text=None) -> dict:
    """A collated-style batch from (B, N, 3) current, (B, N, H, 3) future, (B, N, h, 3) absolute history."""
    current, future = np.asarray(current, np.float32), np.asarray(future, np.float32)
    B, N, H, _ = future.shape
    history = np.zeros((B, N, 2, 3), np.float32) if history is None else np.asarray(history, np.float32)
    hvalid = np.ones(history.shape[:3], bool) if hvalid is None else hvalid
    rel = torch.from_numpy(history - current[:, :, None])
    return {
        "current_uvz": torch.from_numpy(current), "future_uvz": torch.from_numpy(future),
        "future_valid": torch.ones(B, N, H, dtype=torch.bool), "keypoint_mask": torch.ones(B, N, dtype=torch.bool),
        "history": rel, "history_stored": rel, "history_mask": torch.from_numpy(hvalid), "history_valid": torch.from_numpy(hvalid),
        "text": text or [""] * B,
    }


def test_zero_motion_ade_is_the_mean_displacement():
    rng = np.random.default_rng(0)
    cur = rng.uniform(-1, 1, (2, 3, 3))
    fut = cur[:, :, None] + rng.normal(0, 0.1, (2, 3, 8, 3))
    b = _batch(cur, fut)
    pred = predict_zero_motion(b)
    assert pred.shape == (1, 2, 3, 8, 3)
    m = evaluate_traces(pred.reshape(1, 6, 8, 3), fut.reshape(6, 8, 3), np.ones((6, 8), bool), horizons=(8,))
    disp = np.linalg.norm(fut - cur[:, :, None], axis=-1).mean()
    np.testing.assert_allclose(m["uvz/ade@8"], disp, rtol=1e-6)


def test_constant_velocity_is_exact_on_a_constant_velocity_trace():
    v = np.array([0.02, -0.01, 0.003])
    cur = np.array([[[0.1, 0.2, 1.0]]])
    hist = cur[:, :, None] + np.arange(-3, 0)[None, None, :, None] * v  # oldest -> newest: t-3, t-2, t-1
    fut = cur[:, :, None] + np.arange(1, 17)[None, None, :, None] * v
    pred = predict_constant_velocity(_batch(cur, fut, hist))
    np.testing.assert_allclose(pred[0], fut, atol=1e-6)
    # the last history step masked: falls back to zero motion
    hv = np.ones((1, 1, 3), bool)
    hv[..., -1] = False
    np.testing.assert_allclose(predict_constant_velocity(_batch(cur, fut, hist, hv))[0], np.repeat(cur[:, :, None], 16, 2), atol=1e-6)


def test_nearest_neighbour_returns_the_training_trace_for_an_identical_query():
    rng = np.random.default_rng(1)
    cur = rng.uniform(-1, 1, (4, 5, 3))
    fut = cur[:, :, None] + np.cumsum(rng.normal(0, 0.05, (4, 5, 12, 3)), axis=2)
    hist = cur[:, :, None] + rng.normal(0, 0.05, (4, 5, 2, 3))
    train = _batch(cur, fut, hist, text=["open", "push", "open", "reach"])
    nn = NearestNeighbour().fit([train])
    assert nn.size == 20
    np.testing.assert_allclose(nn.predict(train)[0], fut, atol=1e-5)  # history key
    # no history: the key is uv (+ caption embedding); a query at a training uv gets that trace,
    # re-anchored at the query's own position
    q_cur = cur[1:2].copy()
    q_cur[..., 2] += 0.5
    q = _batch(q_cur, fut[1:2], hvalid=np.zeros((1, 5, 2), bool), text=["push"])
    got = nn.predict(q)[0]
    np.testing.assert_allclose(got, fut[1:2] - cur[1:2, :, None] + q_cur[:, :, None], atol=1e-5)


def test_nearest_neighbour_uses_the_caption_embedding_without_history():
    """Two training keypoints at the same uv with different captions: the caption decides."""
    cur = np.zeros((2, 1, 3))
    fut = np.stack([np.full((1, 4, 3), 0.1), np.full((1, 4, 3), -0.1)])
    train = _batch(cur, fut, text=["left", "right"])
    table = {"left": np.array([1.0, 0.0]), "right": np.array([0.0, 1.0])}
    nn = NearestNeighbour(embed_text=lambda texts: np.stack([table[t] for t in texts])).fit([train])
    q = _batch(cur[:1], fut[:1], hvalid=np.zeros((1, 1, 2), bool), text=["right"])
    np.testing.assert_allclose(nn.predict(q)[0], fut[1:2], atol=1e-6)
