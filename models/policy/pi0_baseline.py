"""The π0-style baseline behind the μ0 policy's interface (`loss`, `sample`, `trainable_state_dict`).

transformers' `PI0ForConditionalGeneration` built in code from `Pi0BaselineConfig` (random weights, no hub
access) with the offline tiny tokenizer mu0-tiny uses. Prefix: one camera's image tokens then the prompt
'Task: {instruction}\\n' (right-padded, masked); suffix: the state token and the noisy chunk. Same batch
contract and flow-matching convention as `Mu0Policy` (x_t = t eps + (1 - t) a, Beta(1.5, 1) time, loss
over unpadded steps, Euler from t=1), so the finetune loop, checkpoints and rollouts treat both alike.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbone import build_prompt, tiny_tokenizer
from models.flow_matching import chunk_loss, noise_like, noisy_pair
from models.policy.pi0_config import Pi0BaselineConfig


def hf_config(cfg: Pi0BaselineConfig, image_token_id: int, vocab_size: int):
    """The transformers PI0Config of `cfg`: PaliGemma (SigLIP + Gemma) and a Gemma expert of the same depth."""
    from transformers import PI0Config

    attn = dict(num_hidden_layers=cfg.depth, num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
                head_dim=cfg.head_dim)
    return PI0Config(
        vlm_config=dict(
            model_type="paligemma",
            text_config=dict(model_type="gemma", hidden_size=cfg.vlm_width, intermediate_size=cfg.vlm_mlp,
                             vocab_size=vocab_size, **attn),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=cfg.vision_width, intermediate_size=cfg.vision_mlp,
                               num_hidden_layers=cfg.vision_depth, num_attention_heads=cfg.vision_heads,
                               image_size=cfg.image_size, patch_size=cfg.patch_size, vision_use_head=False),
            projection_dim=cfg.vlm_width,
            image_token_id=image_token_id,
        ),
        dit_config=dict(model_type="gemma", hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, **attn),
        chunk_size=cfg.chunk, max_state_dim=cfg.state_dim, max_action_dim=cfg.action_dim, num_inference_steps=cfg.num_steps,
    )


class Pi0Baseline(nn.Module):
    """Batch as Mu0Policy's: image (B,3,S,S) in [-1,1], text [B], state (B,S_dim) and actions (B,C,A) normalised,
    action_mask (B,C); uv_image_scale is ignored (no keypoints)."""

    def __init__(self, cfg: Pi0BaselineConfig) -> None:
        super().__init__()
        from transformers import PI0ForConditionalGeneration

        self.cfg = cfg
        self.tokenizer = tiny_tokenizer()
        self.image_token_id = self.tokenizer.convert_tokens_to_ids("<image>")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = PI0ForConditionalGeneration(hf_config(cfg, self.image_token_id, len(self.tokenizer)))

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def sample_seed(self) -> int:
        return self.cfg.noise_seed

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything: VLM and expert both train."""
        return self.state_dict()

    def _prefix(self, batch: dict) -> dict:
        """PI0's prefix inputs: [image tokens; prompt] ids and mask (B, P), one camera per sample."""
        image = batch["image"].float()
        B, dev = image.shape[0], image.device
        enc = self.tokenizer([build_prompt(t) for t in batch["text"]], max_length=self.cfg.max_text_tokens, truncation=True,
                             padding="longest", return_tensors="pt")
        n = self.cfg.image_tokens
        ids = torch.cat([torch.full((B, n), self.image_token_id), enc["input_ids"]], dim=1)
        mask = torch.cat([torch.ones(B, n, dtype=enc["attention_mask"].dtype), enc["attention_mask"]], dim=1)
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "pixel_values": image[:, None],
                "pixel_attention_mask": torch.ones(B, 1, dtype=torch.bool, device=dev)}

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Flow-matching MSE on the normalised action chunk, over valid (unpadded) steps."""
        x_t, v_target, t = noisy_pair(batch["actions"].float(), generator)
        v = self.model(state=batch["state"].float(), noise=x_t, timestep=t, **self._prefix(batch)).logits
        return {"loss": chunk_loss(v, v_target, batch["action_mask"])}

    @torch.no_grad()
    def sample(self, batch: dict, generator: torch.Generator | None = None, num_steps: int | None = None) -> torch.Tensor:
        """(B, chunk, A) normalised actions: Euler from noise at t=1 to 0, the VLM prefix cached once."""
        state = batch["state"].float()
        noise = noise_like((state.shape[0], self.cfg.chunk, self.cfg.action_dim), generator, state.device)
        return self.model.sample_actions(state=state, noise=noise, num_steps=num_steps or self.cfg.num_steps,
                                         **self._prefix(batch))
