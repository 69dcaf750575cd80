"""A minimal LoRA for nn.Linear (no peft dependency): W x + (alpha / r) B A x, switched on per call site.

The depth image goes through the same (frozen) vision tower as the RGB image, but with low-rank
adapters active (docs/method.md#model-depth-input); `lora_active(model)` turns them on for one forward.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn


class LoRALinear(nn.Module):
    """Wraps a Linear; B starts at zero so the adapted layer equals the base layer at init."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.active = False

    @property
    def weight(self) -> torch.Tensor:  # callers that read .weight (dtype checks) see the base weight
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.active:
            y = y + (x @ self.lora_a.to(x.dtype).T @ self.lora_b.to(x.dtype).T) * self.scale
        return y


def add_lora(module: nn.Module, targets: tuple[str, ...], rank: int, alpha: float) -> list[LoRALinear]:
    """Replace every nn.Linear child whose attribute name is in `targets` by a LoRALinear; returns them."""
    wrapped: list[LoRALinear] = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                lora = LoRALinear(child, rank, alpha).to(child.weight.device)
                setattr(parent, name, lora)
                wrapped.append(lora)
    return wrapped


@contextmanager
def lora_active(module: nn.Module):
    """Turn on every LoRALinear under `module` for the duration of the block."""
    layers = [m for m in module.modules() if isinstance(m, LoRALinear)]
    for m in layers:
        m.active = True
    try:
        yield
    finally:
        for m in layers:
            m.active = False
