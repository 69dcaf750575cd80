"""adaRMS (π0.5-style time conditioning): RMSNorm whose scale/shift/gate come from the flow time.

Only the suffix (action) rows are modulated; prefix rows get a plain Gemma RMSNorm (x * (1 + w)) and
a unit gate, so the prefix never depends on the flow time. The modulation is zero-initialised: every
suffix residual starts closed (gate 0) and the block starts as the identity, as in adaLN-Zero.
"""

from __future__ import annotations

import torch
from torch import nn


class AdaRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))  # Gemma: scale by (1 + weight)
        self.modulation = nn.Linear(dim, 3 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, P+S, D), cond (B, D) -> (normed (B, P+S, D), residual gate (B, P+S, D))."""
        normed = x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)
        scale, shift, gate = self.modulation(cond)[:, None].chunk(3, dim=-1)
        pre, suf = normed[:, :n_prefix], normed[:, n_prefix:]
        out = torch.cat([pre * (1 + self.weight), suf * (1 + scale) + shift], dim=1)
        gates = torch.cat([torch.ones_like(pre), gate.expand_as(suf)], dim=1)
        return out, gates
