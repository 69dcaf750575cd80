"""μ0: a VLM prefix + a flow-matching trace expert over per-keypoint B-spline control points
(docs/method.md#mu0-model).

`loss(batch)` is one training objective evaluation; `sample(batch)` integrates the flow from noise with
the prefix (backbone K/V, DINO features, masks) computed once and reused by every Euler step.
The batch is the loader's dict of tensors (see the keys used below; shapes in `Mu0.loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.backbone import Prefix, VLMBackbone
from models.dino_features import DinoFeatures
from models.expert import TraceExpert, intermediate_size
from models.flow_matching import (
    clean_estimate,
    done_loss,
    euler_sample,
    flow_loss,
    noise_like,
    noisy_pair,
    rigidity_loss,
)
from models.keypoint_tokens import KeypointTokens
from models.masks import suffix_attention_mask, suffix_layout, suffix_token_valid
from models.mu0_config import Mu0Config
from models.point_encoder import PointEncoder


@dataclass
class _Context:
    """Everything that does not depend on the flow state x_t: computed once per batch."""

    prefix: Prefix
    mask: torch.Tensor  # (B, S, P+S) bool
    pos: torch.Tensor  # (B, S) suffix position ids (= prefix length, shared)
    features: torch.Tensor | None  # (B, N, C) per-keypoint image features (DINOv2 and/or the point encoder)


def _rope_theta(text_config) -> float:
    rope = getattr(text_config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(text_config, "rope_theta", 10000.0)))


class Mu0(nn.Module):
    def __init__(self, cfg: Mu0Config) -> None:
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.backbone = VLMBackbone(cfg)
            tc = self.backbone.text_config
            vlm_dim, heads, kv = tc.hidden_size, tc.num_attention_heads, tc.num_key_value_heads
            head_dim = getattr(tc, "head_dim", None) or vlm_dim // heads
            dim = int(round(cfg.expert_width * vlm_dim))
            self.dino = DinoFeatures(cfg.dino, cfg.dino_image_size) if cfg.dino else None
            self.point_encoder = PointEncoder(cfg.point_encoder_channels) if cfg.point_encoder_channels else None
            feature_dim = sum(m.dim for m in (self.dino, self.point_encoder) if m is not None)
            self.tokens = KeypointTokens(
                dim, cfg.history_group, cfg.history_tokens, cfg.ctrl_group, cfg.future_tokens,
                n_freqs=cfg.fourier_freqs, feature_dim=feature_dim or None,
            )
            self.expert = TraceExpert(
                dim, intermediate_size(dim, multiple_of=cfg.expert_ffn_multiple_of), self.backbone.num_layers,
                heads, kv, head_dim, cfg.self_attn_every_n_layers, _rope_theta(tc), tc.rms_norm_eps, cfg.timestep_freqs,
            )
            self.velocity_head = nn.Linear(dim, 3 * cfg.ctrl_group)
            self.done_head = nn.Linear(dim, cfg.horizon)
            nn.init.constant_(self.done_head.bias, cfg.done_bias_init)

    # ------------------------------------------------------------------------------------------ helpers

    @property
    def device(self) -> torch.device:
        return self.velocity_head.weight.device

    def gradient_checkpointing_enable(self) -> None:
        """Recompute expert layer activations in backward (the frozen backbone keeps none)."""
        self.expert.gradient_checkpointing = True

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def source_parameter_names(self) -> set[str]:
        """Frozen weights that come from the backbone/DINO sources, so checkpoints need not store them."""
        names = {f"backbone.{n}" for n in self.backbone.frozen_parameter_names()}
        if self.dino is not None:
            names |= {f"dino.{n}" for n, _ in self.dino.named_parameters()}
        return names

    def _context(self, batch: dict) -> _Context:
        cfg = self.cfg
        prefix = self.backbone(batch["image"], list(batch["text"]), batch.get("depth_image"), batch.get("has_depth"))
        kp = batch["keypoint_mask"]
        B, N = kp.shape
        group, is_future = suffix_layout(N, cfg.history_tokens, cfg.future_tokens, device=kp.device)
        valid = suffix_token_valid(kp, batch["history_mask"], cfg.history_tokens, cfg.future_tokens)
        mask = suffix_attention_mask(prefix.valid, valid, group, is_future)
        pos = prefix.length[:, None].expand(B, valid.shape[1])
        return _Context(prefix, mask, pos, self._keypoint_features(batch))

    def _keypoint_features(self, batch: dict) -> torch.Tensor | None:
        encoders = [m for m in (self.dino, self.point_encoder) if m is not None]
        if not encoders:
            return None
        uv = batch["keypoints_uv"]
        if "uv_image_scale" in batch:  # (B, 2): map original-image uv into the padded square
            uv = uv * batch["uv_image_scale"][:, None]
        return torch.cat([m(batch["image"], uv).float() for m in encoders], dim=-1)

    def _predict(self, ctx: _Context, batch: dict, x_t: torch.Tensor, t: torch.Tensor):
        """(velocity (B,N,D,3), done logits (B,N,H)) at flow state x_t (B,N,D,3), time t (B,)."""
        cfg = self.cfg
        B, N = x_t.shape[:2]
        tok = self.tokens(batch["history"], batch["history_mask"], x_t, batch["keypoints_uv"], ctx.features)
        h = self.expert(tok, t, ctx.prefix.keys, ctx.prefix.values, ctx.mask, ctx.pos)
        fut = h.view(B, N, cfg.tokens_per_keypoint, -1)[:, :, cfg.history_tokens :]
        v = self.velocity_head(fut).reshape(B, N, cfg.n_ctrl, 3)
        done = self.done_head(fut.mean(dim=2))
        return v, done

    # ---------------------------------------------------------------------------------------------- API

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses. Uses image (B,3,S,S), text [B], history (B,N,h,3), history_mask (B,N,h),
        keypoints_uv (B,N,2), keypoint_mask (B,N), target_ctrl (B,N,D,3), target_valid (B,N),
        future_valid (B,N,H), cluster_id (B,N), and optionally depth_image / has_depth.
        """
        cfg = self.cfg
        x_t, v_target, t = noisy_pair(batch["target_ctrl"].float(), generator)
        ctx = self._context(batch)
        v, done_logits = self._predict(ctx, batch, x_t, t)
        fit = batch["target_valid"] & batch["keypoint_mask"]
        flow = flow_loss(v, v_target, fit)
        done = done_loss(done_logits, batch["future_valid"], batch["keypoint_mask"])
        rigid = rigidity_loss(clean_estimate(x_t, v.float(), t), batch["cluster_id"], fit)
        total = flow + cfg.done_weight * done + cfg.rigid_weight * rigid
        return {"loss": total, "flow": flow.detach(), "done": done.detach(), "rigid": rigid.detach()}

    @torch.no_grad()
    def sample(
        self, batch: dict, num_steps: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ctrl (B,N,D,3) in the scaled anchor-relative target space, done_prob (B,N,H)).

        Euler from noise at t=1 to t=0; `done_prob` is the done head at the last step (threshold 0.5
        truncates the trace). Same generator seed -> same sample.
        """
        cfg = self.cfg
        steps = num_steps or cfg.num_sample_steps
        B, N = batch["keypoint_mask"].shape
        noise = noise_like((B, N, cfg.n_ctrl, 3), generator, self.device)
        ctx = self._context(batch)
        last: dict[str, torch.Tensor] = {}

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v, last["done"] = self._predict(ctx, batch, x, t)
            return v.float()

        ctrl = euler_sample(velocity, noise, steps)
        return ctrl, torch.sigmoid(last["done"].float())

    @torch.no_grad()
    def trace_guidance(
        self, batch: dict, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Partial trace guidance for a downstream policy: only the first Euler step, at t=1, is run.

        Returns (prefix_hidden (B,P,D_vlm): the VLM's last hidden states before its final norm,
        prefix_valid (B,P), keypoint_tokens (B,N,D_expert): the trace expert's pre-norm output at each
        keypoint's last (future) token). Both are read with forward pre-hooks on the final norms, so the
        trace path is exactly `sample`'s first step.
        """
        cfg = self.cfg
        B, N = batch["keypoint_mask"].shape
        seen: dict[str, torch.Tensor] = {}
        hooks = [
            self.backbone.vlm.text_model.norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("vlm", a[0])),
            self.expert.norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("expert", a[0])),
        ]
        try:
            ctx = self._context(batch)
            x1 = noise_like((B, N, cfg.n_ctrl, 3), generator, self.device)
            self._predict(ctx, batch, x1, torch.ones(B, device=self.device))
        finally:
            for h in hooks:
                h.remove()
        tokens = seen["expert"].view(B, N, cfg.tokens_per_keypoint, -1)[:, :, -1]
        return seen["vlm"], ctx.prefix.valid, tokens
