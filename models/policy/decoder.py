"""The action decoder: a small Gemma-style transformer trained from scratch over [prefix; action tokens].

Gemma blocks (pre-norm, grouped-query attention with RoPE, GeGLU MLP) whose norms are adaRMS in the
flow time (models/policy/adarms.py). Masking as π0: the prefix attends bidirectionally within its
valid tokens and never to the actions; action tokens see the valid prefix and each other. The decoder
maps noisy action chunks x_t at time t to the flow velocity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.expert import GatedMLP, apply_rope, sinusoidal_embedding
from models.policy.adarms import AdaRMSNorm
from models.policy.config import PolicyConfig


class DecoderLayer(nn.Module):
    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.theta = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.rope_theta
        self.pre_attention_norm = AdaRMSNorm(cfg.width)
        self.q_proj = nn.Linear(cfg.width, cfg.heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.width, cfg.kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.width, cfg.kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.heads * cfg.head_dim, cfg.width, bias=False)
        self.pre_ffw_norm = AdaRMSNorm(cfg.width)
        self.mlp = GatedMLP(cfg.width, cfg.mlp_dim, activation="gelu_tanh")

    def _split(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, n, self.head_dim).transpose(1, 2)

    def forward(self, x, cond, n_prefix: int, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), cond (B, D), mask (B, L, L) bool, pos (B, L) -> (B, L, D)."""
        h, gate = self.pre_attention_norm(x, cond, n_prefix)
        q = apply_rope(self._split(self.q_proj(h), self.heads), pos, self.theta)
        k = apply_rope(self._split(self.k_proj(h), self.kv_heads), pos, self.theta)
        v = self._split(self.v_proj(h), self.kv_heads)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        B, _, L, _ = att.shape
        x = x + gate * self.o_proj(att.transpose(1, 2).reshape(B, L, -1))
        h, gate = self.pre_ffw_norm(x, cond, n_prefix)
        return x + gate * self.mlp(h)


def decoder_mask(prefix_valid: torch.Tensor, n_actions: int) -> torch.Tensor:
    """(B, P+C, P+C) bool: prefix-LM over the valid prefix, actions see the valid prefix and all actions."""
    B, P = prefix_valid.shape
    L = P + n_actions
    cols = torch.cat([prefix_valid, prefix_valid.new_ones(B, n_actions)], dim=1)
    mask = cols[:, None, :].expand(B, L, L).clone()
    mask[:, :P, P:] = False
    return mask | torch.eye(L, dtype=torch.bool, device=prefix_valid.device)


class ActionDecoder(nn.Module):
    """(prefix tokens, prefix validity, noisy chunk x_t, time t) -> velocity of the chunk."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.time_freqs = cfg.time_freqs
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_freqs, cfg.width), nn.SiLU(), nn.Linear(cfg.width, cfg.width), nn.SiLU())
        self.action_in = nn.Linear(cfg.action_dim, cfg.width)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.depth))
        self.final_norm = AdaRMSNorm(cfg.width)
        self.action_out = nn.Linear(cfg.width, cfg.action_dim)

    def forward(self, prefix: torch.Tensor, prefix_valid: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """prefix (B, P, D), prefix_valid (B, P), x_t (B, C, A), t (B,) -> velocity (B, C, A)."""
        B, P, _ = prefix.shape
        C = x_t.shape[1]
        cond = self.time_mlp(sinusoidal_embedding(t, self.time_freqs).to(prefix.dtype))
        x = torch.cat([prefix, self.action_in(x_t.to(prefix.dtype))], dim=1)
        mask = decoder_mask(prefix_valid, C)
        pre_pos = (prefix_valid.long().cumsum(-1) - 1).clamp(min=0)
        act_pos = prefix_valid.sum(-1, keepdim=True) + torch.arange(C, device=x.device)[None]
        pos = torch.cat([pre_pos, act_pos], dim=1)
        for layer in self.layers:
            x = layer(x, cond, P, mask, pos)
        x, _ = self.final_norm(x, cond, P)
        return self.action_out(x[:, P:])
