"""Trace-prediction baselines evaluated by the same code as the model (docs/method.md#eval-baselines).

Every predictor maps a collated batch (tasks/train/batches.py) to absolute predictions
(S, B, N, H, 3) in normalised uv and meters, like the model's de-normalised samples:

- zero motion: every future step stays at the current position;
- constant velocity: the last history step -> current velocity, extrapolated (it reads the stored
  history, `history_valid`, even under the no-history protocol: masked, it would be zero motion);
- nearest-neighbour retrieval: the training keypoint whose key is closest (current uv + the
  anchor-relative history, or current uv + a caption embedding when there is no history) lends its
  anchor-relative future, added to the query's current position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.spatial import cKDTree

from tasks.train.metrics import constant_velocity, zero_motion

TextEmbedder = Callable[[list[str]], np.ndarray]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def predict_zero_motion(batch: dict) -> np.ndarray:
    cur = _np(batch["current_uvz"]).astype(np.float64)  # (B, N, 3)
    H = batch["future_valid"].shape[-1]
    B, N, _ = cur.shape
    return zero_motion(cur.reshape(B * N, 3), H).reshape(1, B, N, H, 3)


def predict_constant_velocity(batch: dict) -> np.ndarray:
    cur = _np(batch["current_uvz"]).astype(np.float64)
    hist = _np(batch.get("history_stored", batch["history"])).astype(np.float64)  # anchor-relative
    hval = _np(batch.get("history_valid", batch["history_mask"])).astype(bool)
    H = batch["future_valid"].shape[-1]
    B, N, h, _ = hist.shape
    absolute = hist + cur[:, :, None, :]
    pred = constant_velocity(absolute.reshape(B * N, h, 3), cur.reshape(B * N, 3), H, hval.reshape(B * N, h))
    return pred.reshape(1, B, N, H, 3)


def _fill_invalid(delta: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid steps of anchor-relative futures (M, H, 3) hold the last valid value (0 before any)."""
    out = np.where(valid[..., None], delta, 0.0)
    idx = np.where(valid, np.arange(valid.shape[1])[None], -1)
    idx = np.maximum.accumulate(idx, axis=1)
    filled = np.take_along_axis(out, np.maximum(idx, 0)[..., None], axis=1)
    return np.where((idx >= 0)[..., None], filled, 0.0)


class NearestNeighbour:
    """Retrieval baseline over training keypoints; the key depends on whether history is available.

    `text_weight` scales the (unit-norm) caption embedding against uv in [-1, 1].
    """

    def __init__(self, embed_text: TextEmbedder | None = None, text_weight: float = 1.0) -> None:
        self.embed_text = embed_text
        self.text_weight = text_weight
        self._uv: list[np.ndarray] = []
        self._hist: list[np.ndarray] = []
        self._text: list[str] = []
        self._delta: list[np.ndarray] = []
        self._trees: dict[bool, tuple[cKDTree, np.ndarray]] = {}
        self._emb: dict[str, np.ndarray] = {}

    def add(self, batch: dict) -> None:
        """Add every real keypoint of a training batch with at least one valid future step."""
        m = _np(batch["keypoint_mask"]).astype(bool)
        fval = _np(batch["future_valid"]).astype(bool)
        m &= fval.any(-1)
        cur = _np(batch["current_uvz"]).astype(np.float64)
        fut = _np(batch["future_uvz"]).astype(np.float64)
        hist = _np(batch.get("history_stored", batch["history"])).astype(np.float64)
        hval = _np(batch.get("history_valid", batch["history_mask"])).astype(bool)
        b_idx, k_idx = np.nonzero(m)
        self._uv.append(cur[b_idx, k_idx, :2])
        self._hist.append(np.where(hval[b_idx, k_idx][..., None], hist[b_idx, k_idx], 0.0).reshape(len(b_idx), -1))
        self._text.extend(batch["text"][b] for b in b_idx)
        delta = fut[b_idx, k_idx] - cur[b_idx, k_idx][:, None, :]
        self._delta.append(_fill_invalid(delta, fval[b_idx, k_idx]))
        self._trees.clear()

    def fit(self, batches: Iterable[dict]) -> "NearestNeighbour":
        for b in batches:
            self.add(b)
        return self

    @property
    def size(self) -> int:
        return int(sum(len(u) for u in self._uv))

    def _embeddings(self, texts: list[str]) -> np.ndarray:
        if self.embed_text is None:
            return np.zeros((len(texts), 0))
        todo = sorted({t for t in texts if t not in self._emb})
        if todo:
            for t, e in zip(todo, self.embed_text(todo)):
                self._emb[t] = np.asarray(e, np.float64)
        return np.stack([self._emb[t] for t in texts]) if texts else np.zeros((0, 0))

    def _keys(self, uv: np.ndarray, hist: np.ndarray, texts: list[str], with_history: bool) -> np.ndarray:
        if with_history:
            return np.concatenate([uv, hist], axis=1)
        return np.concatenate([uv, self.text_weight * self._embeddings(texts)], axis=1)

    def _tree(self, with_history: bool) -> tuple[cKDTree, np.ndarray]:
        if with_history not in self._trees:
            if not self._uv:
                raise ValueError("nearest-neighbour baseline has no training keypoints: call add()/fit() first")
            uv, hist = np.concatenate(self._uv), np.concatenate(self._hist)
            keys = self._keys(uv, hist, self._text, with_history)
            self._trees[with_history] = (cKDTree(keys), np.concatenate(self._delta))
        return self._trees[with_history]

    def predict(self, batch: dict, use_history: bool | None = None) -> np.ndarray:
        """(1, B, N, H, 3): the neighbour's anchor-relative future + the query's current position.

        `use_history` None: use the history key when the batch has any unmasked history step.
        """
        cur = _np(batch["current_uvz"]).astype(np.float64)
        hist = _np(batch["history"]).astype(np.float64)
        hmask = _np(batch["history_mask"]).astype(bool)
        B, N, _ = cur.shape
        H = batch["future_valid"].shape[-1]
        with_history = bool(hmask.any()) if use_history is None else use_history
        tree, deltas = self._tree(with_history)
        texts = [batch["text"][b] for b in range(B) for _ in range(N)]
        hist_key = np.where(hmask[..., None], hist, 0.0).reshape(B * N, -1)
        keys = self._keys(cur[..., :2].reshape(B * N, 2), hist_key, texts, with_history)
        _, nn = tree.query(keys, k=1)
        d = deltas[nn]  # (B*N, Htrain, 3)
        if d.shape[1] < H:
            d = np.concatenate([d, np.repeat(d[:, -1:], H - d.shape[1], axis=1)], axis=1)
        pred = cur.reshape(B * N, 1, 3) + d[:, :H]
        return pred.reshape(1, B, N, H, 3)
