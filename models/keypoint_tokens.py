"""Per-keypoint suffix tokens (docs/method.md#model-query-representation, flat tokenization).

Each keypoint gets h/g history tokens and D/g_cp control-point tokens, each the sum of
Linear(values) + group-time embedding + segment embedding (history/future) + a 2D Fourier PE of the
keypoint's current (u, v) (zero-init MLP output, so it starts silent); with per-keypoint image features
(DINOv2 and/or the learnt point encoder, concatenated), the sum is concatenated with them and fused by a
2-layer MLP.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def fourier_features(uv: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """(..., 2) in [-1, 1] -> (..., 4 n_freqs): sin/cos at log-spaced pi .. 2^(n-1) pi."""
    freqs = math.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32, device=uv.device)
    ang = uv.float()[..., None] * freqs  # (..., 2, F)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


class KeypointTokens(nn.Module):
    def __init__(
        self, dim: int, history_group: int, history_tokens: int, ctrl_group: int, future_tokens: int,
        n_freqs: int = 8, feature_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.history_group, self.history_tokens = history_group, history_tokens
        self.ctrl_group, self.future_tokens = ctrl_group, future_tokens
        self.n_freqs = n_freqs
        self.history_in = nn.Linear(3 * history_group, dim)
        self.future_in = nn.Linear(3 * ctrl_group, dim)
        self.group_time = nn.Embedding(history_tokens + future_tokens, dim)
        self.segment = nn.Embedding(2, dim)
        self.fourier = nn.Sequential(nn.Linear(4 * n_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.fourier[2].weight)
        nn.init.zeros_(self.fourier[2].bias)
        self.feature_fuse = (
            nn.Sequential(nn.Linear(dim + feature_dim, dim), nn.SiLU(), nn.Linear(dim, dim)) if feature_dim else None
        )

    def forward(
        self,
        history: torch.Tensor,
        history_mask: torch.Tensor,
        x_t: torch.Tensor,
        uv: torch.Tensor,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """history (B,N,h,3), history_mask (B,N,h), x_t (B,N,D,3), uv (B,N,2), features (B,N,C) -> (B, N*G, dim)."""
        B, N = uv.shape[:2]
        hist = torch.where(history_mask[..., None], history, torch.zeros_like(history))
        hist = hist.reshape(B, N, self.history_tokens, 3 * self.history_group)
        fut = x_t.reshape(B, N, self.future_tokens, 3 * self.ctrl_group)
        w = self.history_in.weight
        tok = torch.cat([self.history_in(hist.to(w.dtype)), self.future_in(fut.to(w.dtype))], dim=2)  # (B,N,G,dim)
        G = self.history_tokens + self.future_tokens
        groups = torch.arange(G, device=uv.device)
        seg = (groups >= self.history_tokens).long()
        tok = tok + self.group_time(groups) + self.segment(seg)
        tok = tok + self.fourier(fourier_features(uv, self.n_freqs).to(w.dtype))[:, :, None]
        if self.feature_fuse is not None:
            if features is None:
                raise ValueError("this model was built with per-keypoint image features; pass features (B, N, C)")
            f = features.to(w.dtype)[:, :, None].expand(B, N, G, features.shape[-1])
            tok = self.feature_fuse(torch.cat([tok, f], dim=-1))
        return tok.reshape(B, N * G, -1)
