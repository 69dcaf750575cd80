"""An exponential moving average of a policy's trainable weights, the weights its checkpoints serve.

openpi evaluates the EMA of its parameters (decay 0.99) rather than the last optimiser step: with few
demonstrations the last step's weights carry that step's batch noise into every rollout.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightEMA:
    """`decay`-weighted average of the parameters that require grad (buffers are taken as they are)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach(), 1.0 - self.decay)

    def load_shadow(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a checkpoint's averaged weights (resume)."""
        for k, v in self.shadow.items():
            v.copy_(state[k])

    def averaged(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`state` (a trainable state dict) with every averaged parameter replaced by its average."""
        return {k: self.shadow.get(k, v) for k, v in state.items()}
