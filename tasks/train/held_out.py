"""Held-out scores of a model during pretraining: the curves a schedule is chosen from, and the key
checkpoints are selected by.

The samples are the headline protocol's slots (no history, no depth, 16 fixed keypoints) of a held-out
dataset or split, built once. The loss is the training objective with fixed flow times and noise (four
draws per batch), so two checkpoints are compared on the same draws; ADE/FDE are uvz at the longest
horizon from one sample, as `evaluate` reports them.
"""

from __future__ import annotations

import torch

from tasks.train.batches import BatchConfig, to_device
from tasks.train.evaluate import EvalProtocol, eval_batches, model_predictor, score
from tasks.train.stats import TraceStats

LOSS_DRAWS = 4


class HeldOutScorer:
    def __init__(self, root: str, split: str, eval_fraction: float, stats: TraceStats, batch_cfg: BatchConfig,
                 max_slots: int, protocol: EvalProtocol = EvalProtocol()) -> None:
        self.stats, self.protocol = stats, protocol
        self.batches = eval_batches(root, stats, batch_cfg, protocol, split=split, eval_fraction=eval_fraction,
                                    max_slots=max_slots)
        self.n_slots = sum(len(b["text"]) for b in self.batches)

    def __bool__(self) -> bool:
        return self.n_slots > 0

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            dev = next(model.parameters()).device
            total, count = 0.0, 0
            for i, b in enumerate(self.batches):
                on_dev = to_device(b, dev)
                for d in range(LOSS_DRAWS):
                    gen = torch.Generator(device=dev).manual_seed(1000 * i + d)
                    total += float(model.loss(on_dev, generator=gen)["flow"])
                    count += 1
            h = max(self.protocol.horizons)
            metrics = score(self.batches, model_predictor(model, self.stats, 1, seed=self.protocol.seed), 1, (h,))
        finally:
            model.train(was_training)
        return {"held_out_loss": total / max(count, 1), "held_out_ade": metrics[f"uvz/ade@{h}"],
                "held_out_fde": metrics[f"uvz/fde@{h}"]}
