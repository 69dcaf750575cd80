"""GatedMotionMixer: the VLM tokens read μ0's motion tokens through one gated cross-attention block.

Queries are the LayerNorm'd VLM tokens, keys/values the projected trace tokens; the residual is scaled
by sigmoid(gate) with gate = 0 at init, so training starts from a half-open gate the optimiser can
close (traces useless) or open (traces useful) instead of a hard switch. The residual stream is the
normalised VLM tokens: the VLM's pre-norm hidden states are large (RMS ~160 in mu0-tiny against ~0.1
for the attention output), so a residual on them would vanish in the decoder's input LayerNorm and the
traces would never reach the decoder.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedMotionMixer(nn.Module):
    def __init__(self, vlm_dim: int, trace_dim: int, heads: int) -> None:
        super().__init__()
        if vlm_dim % heads:
            raise ValueError(f"mixer heads {heads} must divide the VLM width {vlm_dim}")
        self.query_norm = nn.LayerNorm(vlm_dim)
        self.trace_proj = nn.Linear(trace_dim, vlm_dim)
        self.attn = nn.MultiheadAttention(vlm_dim, heads, batch_first=True)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, vlm_tokens: torch.Tensor, trace_tokens: torch.Tensor) -> torch.Tensor:
        """vlm_tokens (B, P, D_vlm), trace_tokens (B, M, D_trace) -> (B, P, D_vlm)."""
        kv = self.trace_proj(trace_tokens)
        q = self.query_norm(vlm_tokens)
        out, _ = self.attn(q, kv, kv, need_weights=False)
        return q + torch.sigmoid(self.gate) * out
