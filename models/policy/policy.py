"""The μ0 policy (docs/method.md#downstream-action-expert): frozen μ0 guidance -> gated mixer -> action decoder.

Per observation, μ0 runs once (one Euler step at t=1 on a G x G grid, `Mu0.trace_guidance`). Its VLM
hidden states, mixed with the 2x2-pooled trace tokens (skipped when `use_traces` is False), the
prompt's token embeddings, optional wrist tokens and one state token, each LayerNorm + Linear to the
decoder width, form the prefix; the action chunk is the suffix, trained by flow matching (Beta(1.5, 1)
time, x_t = t eps + (1 - t) a) and sampled with `num_steps` Euler steps. Only the mixer, the
projections and the decoder train; μ0 stays frozen and in eval mode.

Batch (B samples, C chunk, A actions): image (B,3,S,S) in [-1,1], text [B], state (B,S_dim) normalised,
uv_image_scale (B,2) optional, wrist (B,W,wrist_dim) optional; for `loss` also actions (B,C,A)
normalised and action_mask (B,C).
"""

from __future__ import annotations

import torch
from torch import nn

from models.flow_matching import chunk_loss, euler_sample, noise_like, noisy_pair
from models.mu0 import Mu0
from models.policy.config import PolicyConfig
from models.policy.decoder import ActionDecoder
from models.policy.guidance import grid_uv, mu0_batch, pool_grid
from models.policy.mixer import GatedMotionMixer


def _projection(dim_in: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim_in), nn.Linear(dim_in, dim_out))


class Mu0Policy(nn.Module):
    def __init__(self, cfg: PolicyConfig, mu0: Mu0) -> None:
        super().__init__()
        self.cfg = cfg
        self.mu0 = mu0.eval().requires_grad_(False)
        vlm_dim = mu0.backbone.text_config.hidden_size
        trace_dim = mu0.velocity_head.in_features
        self.register_buffer("grid_uv", grid_uv(cfg.grid), persistent=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.vlm_proj = _projection(vlm_dim, cfg.width)
            self.text_proj = _projection(vlm_dim, cfg.width)
            self.state_proj = _projection(cfg.state_dim, cfg.width) if cfg.state_dim else None
            if cfg.wrist_dim:
                self.wrist_proj = _projection(cfg.wrist_dim, cfg.width)
                self.wrist_pos = nn.Parameter(torch.randn(cfg.wrist_tokens, cfg.width) * 0.02)
            self.decoder = ActionDecoder(cfg)
            # Last, so that with and without traces every other module starts from the same weights: the
            # ablation (`use_traces=False`) then differs from the policy by the mixer alone, not by its seed.
            self.mixer = GatedMotionMixer(vlm_dim, trace_dim, cfg.mixer_heads) if cfg.use_traces else None

    def train(self, mode: bool = True):
        super().train(mode)
        self.mu0.eval()  # frozen: no dropout, whatever the policy's mode
        return self

    @property
    def image_size(self) -> int:
        """Side of the square image the policy takes: μ0's."""
        return self.mu0.cfg.image_size

    @property
    def sample_seed(self) -> int:
        return self.cfg.guidance_seed

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but μ0 (its checkpoint is referenced, not copied)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("mu0.")}

    # --------------------------------------------------------------------------------------------- prefix

    @torch.no_grad()
    def _guidance(self, batch: dict):
        """μ0's one-step guidance from noise drawn with `guidance_seed` on every call, in training as at
        inference: one draw changes the trace tokens by ~46% against another, so random draws in
        training would teach the decoder that the traces are noise."""
        m = self.mu0
        b = mu0_batch(batch["image"], batch["text"], self.grid_uv, m.cfg.history_len, batch.get("uv_image_scale"))
        fixed = torch.Generator(device=m.device).manual_seed(self.cfg.guidance_seed)
        hidden, valid, keypoints = m.trace_guidance(b, fixed)
        ids, text_valid = m.backbone.tokenize(list(batch["text"]), hidden.device)
        text = m.backbone.vlm.text_model.get_input_embeddings()(ids)
        return hidden.float(), valid, pool_grid(keypoints.float(), self.cfg.grid), text.float(), text_valid

    def prefix(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, P, width), valid (B, P)): [mixed VLM tokens; prompt embeddings; wrist; state]."""
        hidden, valid, traces, text, text_valid = self._guidance(batch)
        if self.mixer is not None:
            hidden = self.mixer(hidden, traces)
        parts, masks = [self.vlm_proj(hidden), self.text_proj(text)], [valid, text_valid]
        B, dev = hidden.shape[0], hidden.device
        if self.cfg.wrist_dim:
            wrist = self.wrist_proj(batch["wrist"].float()) + self.wrist_pos[: batch["wrist"].shape[1]]
            parts.append(wrist)
            masks.append(torch.ones(wrist.shape[:2], dtype=torch.bool, device=dev))
        if self.state_proj is not None:
            parts.append(self.state_proj(batch["state"].float())[:, None])
            masks.append(torch.ones(B, 1, dtype=torch.bool, device=dev))
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    # ------------------------------------------------------------------------------------------------ API

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Flow-matching MSE on the normalised action chunk, over valid (unpadded) steps."""
        a = batch["actions"].float()
        x_t, v_target, t = noisy_pair(a, generator)
        tokens, valid = self.prefix(batch)
        out = {"loss": chunk_loss(self.decoder(tokens, valid, x_t, t), v_target, batch["action_mask"])}
        if self.mixer is not None:
            out["gate"] = torch.sigmoid(self.mixer.gate.detach())[0]
        return out

    @torch.no_grad()
    def sample(self, batch: dict, generator: torch.Generator | None = None, num_steps: int | None = None) -> torch.Tensor:
        """(B, chunk, A) normalised actions: Euler from noise at t=1 to 0, the prefix computed once."""
        tokens, valid = self.prefix(batch)
        noise = noise_like((tokens.shape[0], self.cfg.chunk, self.cfg.action_dim), generator, tokens.device)
        return euler_sample(lambda x, t: self.decoder(tokens, valid, x, t), noise, num_steps or self.cfg.num_steps)
