"""Attention masks of μ0 (docs/method.md#model-masking), as booleans: True = the row token may attend to the
column.

Sequence = [prefix (P); suffix (S)]. The suffix is keypoint-major: keypoint n owns tokens
n*G .. n*G+G-1, first its history groups (oldest first), then its control-point (future) groups.

- prefix tokens see every valid prefix token (prefix-LM) and never the suffix;
- a history token of group j sees valid history tokens of groups <= j, of every keypoint (causal across groups);
- a future token sees every valid suffix token (bidirectional over the whole suffix);
- every suffix token sees the valid prefix;
- padding (invalid) suffix tokens are seen by nobody and see only the prefix and themselves;
- every token sees itself, so no softmax row is empty.
"""

from __future__ import annotations

import torch


def suffix_layout(n_keypoints: int, history_tokens: int, future_tokens: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(group (S,), is_future (S,)) for the keypoint-major suffix; group counts history then future groups."""
    G = history_tokens + future_tokens
    group = torch.arange(G, device=device).repeat(n_keypoints)
    return group, group >= history_tokens


def suffix_token_valid(
    keypoint_mask: torch.Tensor, history_mask: torch.Tensor, history_tokens: int, future_tokens: int
) -> torch.Tensor:
    """(B, N*G) validity: future tokens of real keypoints; history tokens that hold >= 1 valid step."""
    B, N, h = history_mask.shape
    hist_ok = history_mask.reshape(B, N, history_tokens, h // history_tokens).any(-1) & keypoint_mask[..., None]
    fut_ok = keypoint_mask[..., None].expand(B, N, future_tokens)
    return torch.cat([hist_ok, fut_ok], dim=-1).reshape(B, N * (history_tokens + future_tokens))


def suffix_attention_mask(
    prefix_valid: torch.Tensor, token_valid: torch.Tensor, group: torch.Tensor, is_future: torch.Tensor
) -> torch.Tensor:
    """(B, S, P+S): what each suffix token may attend to (the rows the trace expert uses)."""
    B, S = token_valid.shape
    P = prefix_valid.shape[1]
    hist = ~is_future
    # history row i, history column j: group[j] <= group[i]; future row: every column
    causal_hist = hist[None, :] & (group[None, :] <= group[:, None])
    rule = torch.where(is_future[:, None], torch.ones_like(causal_hist), causal_hist)  # (S, S)
    suf = rule[None] & token_valid[:, None, :] & token_valid[:, :, None]
    suf = suf | torch.eye(S, dtype=torch.bool, device=token_valid.device)[None]
    pre = prefix_valid[:, None, :].expand(B, S, P)
    return torch.cat([pre, suf], dim=-1)


def prefix_attention_mask(prefix_valid: torch.Tensor) -> torch.Tensor:
    """(B, P, P): prefix-LM, bidirectional over the valid prefix (+ self)."""
    P = prefix_valid.shape[1]
    eye = torch.eye(P, dtype=torch.bool, device=prefix_valid.device)
    return prefix_valid[:, None, :].expand(-1, P, -1) | eye


def full_attention_mask(
    prefix_valid: torch.Tensor, token_valid: torch.Tensor, group: torch.Tensor, is_future: torch.Tensor
) -> torch.Tensor:
    """(B, P+S, P+S): the whole prefix-LM mask; prefix rows never see the suffix."""
    B, S = token_valid.shape
    P = prefix_valid.shape[1]
    top = torch.cat([prefix_attention_mask(prefix_valid), prefix_valid.new_zeros(B, P, S)], dim=-1)
    return torch.cat([top, suffix_attention_mask(prefix_valid, token_valid, group, is_future)], dim=1)


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> additive float mask (0 where allowed, dtype min elsewhere)."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)
