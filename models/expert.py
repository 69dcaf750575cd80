"""The trace expert (docs/method.md#model-trace-expert): SmolLM-style decoder layers, one per backbone layer.

Even layers: joint self-attention over [prefix; suffix] -- the suffix's queries/keys/values come from the
expert, the prefix's keys/values are that backbone layer's own (the prefix never sees the suffix, so the
backbone runs alone). Odd layers: suffix queries cross-attend to that backbone layer's K/V, re-projected
by expert-side k/v projections. Attention heads and head size are the backbone's, so K/V line up.
Every layer is adaLN-Zero modulated by the flow time: SiLU -> Linear(6 D), zero-init, identity at start.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def intermediate_size(hidden: int, multiplier: int = 4, multiple_of: int = 256) -> int:
    """SmolLM/SmolVLA's FFN rule: 4 * (2/3) * hidden, rounded up to `multiple_of` (1024 -> 2816)."""
    h = int(2 * hidden / 3)
    h = int(multiplier * h)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) times in [0, 1] -> (B, dim) [cos | sin] features (DiT's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]  # t in [0,1] spans the same range as DiT's integer steps
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Shared by all layers: sinusoid(n_freqs) -> Linear -> SiLU -> Linear -> (B, D)."""

    def __init__(self, dim: int, n_freqs: int = 256) -> None:
        super().__init__()
        self.n_freqs = n_freqs
        self.mlp = nn.Sequential(nn.Linear(n_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.n_freqs).to(self.mlp[0].weight.dtype))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Llama RoPE of x (B, H, S, hd) at integer positions pos (B, S)."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32, device=x.device) / hd))
    ang = pos.float()[..., None] * inv  # (B, S, hd/2)
    emb = torch.cat([ang, ang], dim=-1)[:, None]  # (B, 1, S, hd)
    return (x.float() * emb.cos() + rotate_half(x.float()) * emb.sin()).to(x.dtype)


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with SiLU (SmolLM, the trace expert), GeGLU with tanh-GELU (Gemma)."""

    def __init__(self, dim: int, hidden: int, activation: str = "silu") -> None:
        super().__init__()
        if activation not in ("silu", "gelu_tanh"):
            raise ValueError(f"activation must be 'silu' or 'gelu_tanh', got {activation!r}")
        self.activation = activation
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate_proj(x)
        gate = F.silu(gate) if self.activation == "silu" else F.gelu(gate, approximate="tanh")
        return self.down_proj(gate * self.up_proj(x))


def _attend(q, k, v, mask: torch.Tensor) -> torch.Tensor:
    """q (B,H,S,hd), k/v (B,KV,L,hd) (grouped-query), mask (B,S,L) bool -> (B,S,H*hd)."""
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    v = v.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k.to(q.dtype), v, attn_mask=mask[:, None])
    B, H, S, hd = out.shape
    return out.transpose(1, 2).reshape(B, S, H * hd)


class ExpertLayer(nn.Module):
    """One adaLN-Zero decoder layer; `cross=True` attends to the prefix only, through re-projected K/V."""

    def __init__(self, dim: int, ffn: int, n_heads: int, n_kv: int, head_dim: int, cross: bool, theta: float, eps: float):
        super().__init__()
        self.cross, self.n_heads, self.n_kv, self.head_dim, self.theta = cross, n_heads, n_kv, head_dim, theta
        kv_in = n_kv * head_dim if cross else dim
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(kv_in, n_kv * head_dim, bias=False)
        self.v_proj = nn.Linear(kv_in, n_kv * head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=False)
        self.input_layernorm = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)
        self.post_attention_layernorm = nn.RMSNorm(dim, eps=eps, elementwise_affine=True)
        self.mlp = GatedMLP(dim, ffn)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, S, _ = x.shape
        return x.view(B, S, n, self.head_dim).transpose(1, 2)

    def forward(self, x, temb, pkeys, pvalues, mask, pos):
        """x (B,S,D), temb (B,D), prefix K/V (B,KV,P,hd), mask (B,S,P+S) bool, pos (B,S) -> (B,S,D)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.ada(temb)[:, None].chunk(6, dim=-1)
        h = self.input_layernorm(x) * (1 + scale_a) + shift_a
        q = apply_rope(self._heads(self.q_proj(h), self.n_heads), pos, self.theta)
        P = pkeys.shape[2]
        if self.cross:
            B = x.shape[0]
            flat = lambda t: t.transpose(1, 2).reshape(B, P, self.n_kv * self.head_dim).to(h.dtype)  # noqa: E731
            k = self._heads(self.k_proj(flat(pkeys)), self.n_kv)
            v = self._heads(self.v_proj(flat(pvalues)), self.n_kv)
            att = _attend(q, k, v, mask[..., :P])
        else:
            k = apply_rope(self._heads(self.k_proj(h), self.n_kv), pos, self.theta)
            v = self._heads(self.v_proj(h), self.n_kv)
            k = torch.cat([pkeys.to(k.dtype), k], dim=2)
            v = torch.cat([pvalues.to(v.dtype), v], dim=2)
            att = _attend(q, k, v, mask)
        x = x + gate_a * self.o_proj(att)
        h = self.post_attention_layernorm(x) * (1 + scale_m) + shift_m
        return x + gate_m * self.mlp(h)


class TraceExpert(nn.Module):
    """Stack of ExpertLayers (self-attention every n-th, cross-attention otherwise) + final RMSNorm."""

    def __init__(
        self, dim: int, ffn: int, n_layers: int, n_heads: int, n_kv: int, head_dim: int,
        self_attn_every: int = 2, theta: float = 10000.0, eps: float = 1e-5, n_freqs: int = 256,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ExpertLayer(dim, ffn, n_heads, n_kv, head_dim, cross=(i % self_attn_every != 0), theta=theta, eps=eps)
            for i in range(n_layers)
        )
        self.time = TimestepEmbedder(dim, n_freqs)
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.gradient_checkpointing = False

    def forward(self, x, t, keys, values, mask, pos):
        """x (B,S,D), t (B,), per-layer prefix keys/values, mask (B,S,P+S), pos (B,S) -> (B,S,D)."""
        temb = self.time(t).to(x.dtype)
        for layer, k, v in zip(self.layers, keys, values, strict=True):
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, temb, k, v, mask, pos, use_reentrant=False)
            else:
                x = layer(x, temb, k, v, mask, pos)
        return self.norm(x)
