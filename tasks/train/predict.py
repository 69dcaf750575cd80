"""Predict one frame's traces with a checkpoint and draw them over the frame (`mu0 predict`)."""

from __future__ import annotations

import cv2
import numpy as np

from storage.torch_loader import LanceTraceDataset, TraceIndex
from tasks.train.batches import BatchConfig, SampleToItem, collate
from tasks.train.evaluate import model_predictor

PRED_BGR = (40, 40, 230)
TRUE_BGR = (60, 200, 60)


class PredictionError(ValueError):
    """The episode/frame asked for is not in the dataset (the message lists what is)."""


def find_slot(index: TraceIndex, episode: str, frame: int) -> TraceIndex:
    ids = sorted({e for e in index.episode_ids.tolist() if e.startswith(episode)})
    if len(ids) != 1:
        raise PredictionError(f"episode {episode!r} matches {len(ids)} episodes with samples" + (f": {[i[:12] for i in ids[:5]]}" if ids else ""))
    keep = (index.episode_ids == ids[0]) & (index.frames == frame)
    if not keep.any():
        frames = sorted(index.frames[index.episode_ids == ids[0]].tolist())
        raise PredictionError(f"episode {ids[0][:12]} has no sample at frame {frame}; frames with samples: {frames[:20]}...")
    return index.select(keep)


def to_pixels(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Inverse of bspline.normalize_pixels."""
    return (uv + 1.0) / 2.0 * np.array([width, height]) - 0.5


def draw_traces(rgb: np.ndarray, current_px: np.ndarray, pred_px: np.ndarray, true_px: np.ndarray, true_valid: np.ndarray,
                scale: int = 2) -> np.ndarray:
    """BGR image (upscaled by `scale`) with true (green) and predicted (red) polylines per keypoint."""
    img = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    for k in range(current_px.shape[0]):
        start = current_px[k] * scale
        true = np.concatenate([start[None], true_px[k][true_valid[k]] * scale])
        pred = np.concatenate([start[None], pred_px[k] * scale])
        cv2.polylines(img, [np.round(true).astype(np.int32)], False, TRUE_BGR, 1, cv2.LINE_AA)
        cv2.polylines(img, [np.round(pred).astype(np.int32)], False, PRED_BGR, 1, cv2.LINE_AA)
        cv2.circle(img, tuple(np.round(start).astype(int)), 2, (255, 255, 255), -1, cv2.LINE_AA)
    return img


def predict_frame(checkpoint: str, dataset: str, episode: str, frame: int, out: str, n_keypoints: int = 16,
                  use_history: bool = False, seed: int = 0, device: str = "auto", mean_of: int = 8) -> str:
    """Draw the prediction (the mean of `mean_of` samples, the evaluation's point prediction; 0: one draw)."""
    from models.checkpoint import load_checkpoint
    from models.device import resolve_device
    from tasks.train.loop import checkpoint_stats

    model = load_checkpoint(checkpoint)[0].to(resolve_device(device)).eval()
    stats = checkpoint_stats(checkpoint)
    slot = find_slot(TraceIndex.build(dataset), episode, frame)
    tf = SampleToItem(BatchConfig.for_model(model.cfg), stats, train=False, seed=seed, n_keypoints=n_keypoints,
                      use_history=use_history, use_depth=False)
    ds = LanceTraceDataset(dataset, split="all", index=slot, read_depth=False)
    raw = ds.rows.read(0)
    batch = collate([tf(raw, 0, 0)])
    pred = model_predictor(model, stats, n_samples=1, seed=seed, mean_of=mean_of)(batch)[0, 0]  # (N, H, 3)
    W, H = raw["episode"]["width"], raw["episode"]["height"]
    m = batch["keypoint_mask"][0].numpy()
    img = draw_traces(raw["image"], to_pixels(batch["current_uvz"][0].numpy()[m, :2], W, H),
                      to_pixels(pred[m, :, :2], W, H), to_pixels(batch["future_uvz"][0].numpy()[m, :, :2], W, H),
                      batch["future_valid"][0].numpy()[m])
    if not cv2.imwrite(out, img):
        raise PredictionError(f"could not write {out}")
    return out
