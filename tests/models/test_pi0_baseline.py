"""The π0-style baseline (transformers' PI0 built tiny in code): it learns, masks padding, round-trips its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from models.policy.checkpoint import load_policy_weights, read_policy_config, save_policy
from models.policy.config import get_policy_preset
from models.policy.pi0_baseline import Pi0Baseline
from models.policy.pi0_config import Pi0BaselineConfig


def _batch(B: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, 16, dtype=torch.bool)
    mask[-1, 10:] = False  # an episode end: padded, masked steps
    texts = ["press the button", "pick up the red block and place it in the bin", "open the drawer", "reach the target"]
    return {"image": torch.rand(B, 3, 64, 64, generator=g) * 2 - 1, "text": texts[:B],
            "state": torch.randn(B, 39, generator=g), "actions": torch.randn(B, 16, 4, generator=g), "action_mask": mask}


@pytest.fixture(scope="module")
def tiny() -> Pi0Baseline:
    return Pi0Baseline(get_policy_preset("pi0-tiny"))


def test_preset_is_the_pi0_kind_with_policy_tiny_expert_shapes(tiny):
    cfg = get_policy_preset("pi0-tiny", action_dim=4, state_dim=39)
    assert isinstance(cfg, Pi0BaselineConfig) and cfg.kind == "pi0" and get_policy_preset("policy-tiny").kind == "mu0"
    dit = tiny.model.config.dit_config
    assert (dit.hidden_size, dit.num_hidden_layers, dit.intermediate_size, dit.num_attention_heads) == (128, 4, 512, 4)
    assert tiny.model.config.vlm_config.text_config.num_hidden_layers == dit.num_hidden_layers
    assert 1.5e6 < sum(p.numel() for p in tiny.parameters()) < 3e6
    with pytest.raises(ValueError, match="patch_size"):
        Pi0BaselineConfig(image_size=60, patch_size=8)


def test_loss_is_finite_and_falls_on_a_fixed_batch():
    """One smooth chunk for every sample (as a demonstration's are): from scratch, 30 steps fit it well below the start."""
    policy = Pi0Baseline(get_policy_preset("pi0-tiny"))
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    batch, losses = _batch(), []
    batch["actions"] = torch.sin(torch.linspace(0, 3, 16)[:, None] + torch.arange(4)[None]).expand(4, 16, 4).clone()
    for _ in range(30):
        loss = policy.loss(batch, torch.Generator().manual_seed(1))["loss"]  # same noise and time every step
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is not None for n, p in policy.model.named_parameters() if "vision" in n and p.requires_grad)


def test_a_sample_does_not_depend_on_the_other_prompts_in_its_batch(tiny):
    """Prompts are right-padded to the longest: padding must be masked in the VLM and in the expert."""
    tiny.eval()
    batch = _batch(B=2)
    both = tiny.sample(batch, torch.Generator().manual_seed(0))
    alone = tiny.sample({k: v[:1] for k, v in batch.items()}, torch.Generator().manual_seed(0))
    assert both.shape == (2, 16, 4)
    torch.testing.assert_close(alone[0], both[0], atol=1e-5, rtol=1e-4)


def test_masked_action_steps_do_not_count():
    """Masked steps are still inputs (x_t) to their own sample's chunk, so only whole masked samples are compared."""
    policy = Pi0Baseline(get_policy_preset("pi0-tiny"))
    batch = _batch()
    batch["action_mask"][1:] = False
    changed = {**batch, "actions": batch["actions"].clone()}
    changed["actions"][1:] += 100.0
    a, b = (policy.loss(x, torch.Generator().manual_seed(2))["loss"] for x in (batch, changed))
    torch.testing.assert_close(a, b)


def test_checkpoint_round_trip_rebuilds_the_same_policy(tmp_path, tiny):
    tiny.eval()
    ckpt = save_policy(tiny, tmp_path / "step-000003", 3)
    assert json.loads((ckpt / "config.json").read_text())["kind"] == "pi0"
    cfg = read_policy_config(ckpt)
    assert cfg == tiny.cfg
    back = Pi0Baseline(cfg.model_copy(update={"seed": 1})).eval()  # other random weights, then the checkpoint's
    assert load_policy_weights(back, ckpt) == 3
    batch = _batch(B=2)
    torch.testing.assert_close(back.sample(batch, torch.Generator().manual_seed(0)),
                               tiny.sample(batch, torch.Generator().manual_seed(0)))
