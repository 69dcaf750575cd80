"""The μ0 policy on a tiny μ0: guidance is μ0's first Euler step, the gate starts half open, μ0 stays frozen."""

from __future__ import annotations

import pytest
import torch

from models.mu0 import Mu0
from models.mu0_config import get_model_preset
from models.policy.config import get_policy_preset
from models.policy.guidance import grid_uv, mu0_batch
from models.policy.policy import Mu0Policy


@pytest.fixture(scope="module")
def mu0():
    return Mu0(get_model_preset("mu0-tiny")).eval()


def _batch(B: int = 2, seed: int = 0, state_dim: int = 39, action_dim: int = 4, chunk: int = 16) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, chunk, dtype=torch.bool)
    mask[-1, 10:] = False  # an episode end: padded, masked steps
    return {"image": torch.rand(B, 3, 64, 64, generator=g) * 2 - 1, "text": ["reach the goal", "press the button"][:B],
            "uv_image_scale": torch.tensor([[1.0, 0.75]] * B), "state": torch.randn(B, state_dim, generator=g),
            "actions": torch.randn(B, chunk, action_dim, generator=g), "action_mask": mask}


def test_trace_guidance_is_the_first_euler_step_of_mu0(mu0):
    uv = grid_uv(8)
    batch = mu0_batch(torch.rand(2, 3, 64, 64) * 2 - 1, ["open the drawer", ""], uv, mu0.cfg.history_len,
                      torch.tensor([[1.0, 0.75]] * 2))
    hidden, valid, tokens = mu0.trace_guidance(batch, torch.Generator().manual_seed(3))
    assert hidden.shape[:2] == valid.shape and hidden.shape[-1] == mu0.backbone.text_config.hidden_size
    assert tokens.shape == (2, 64, mu0.velocity_head.in_features)
    with torch.no_grad():  # the step `sample` takes first: same noise, t = 1
        noise = torch.randn((2, 64, mu0.cfg.n_ctrl, 3), generator=torch.Generator().manual_seed(3))
        v, _ = mu0._predict(mu0._context(batch), batch, noise, torch.ones(2))
        v_from_tokens = mu0.velocity_head(mu0.expert.norm(tokens)).reshape(v.shape)
    torch.testing.assert_close(v_from_tokens, v)
    prenorm = hidden[valid]
    assert not torch.allclose(mu0.backbone.vlm.text_model.norm(prenorm), prenorm)  # before the final norm
    assert uv.min() > -1 and uv.max() < 1 and uv[1, 0] > uv[0, 0] and uv[8, 1] > uv[0, 1]  # row-major cell centres


def test_gate_starts_half_open_and_the_ablation_has_no_mixer(mu0):
    with_traces = Mu0Policy(get_policy_preset("policy-tiny"), mu0)
    assert torch.sigmoid(with_traces.mixer.gate).item() == 0.5
    assert with_traces.loss(_batch())["gate"].item() == 0.5
    ablation = Mu0Policy(get_policy_preset("policy-tiny", use_traces=False), mu0)
    assert ablation.mixer is None and not any(k.startswith("mixer.") for k in ablation.trainable_state_dict())
    assert all(not k.startswith("mu0.") for k in with_traces.trainable_state_dict())
    tokens, valid = ablation.prefix(_batch())
    assert tokens.shape[-1] == 128 and valid.all(-1).any()
    assert torch.isfinite(ablation.loss(_batch())["loss"])
    # the ablation differs by the mixer alone: every other module starts from the same weights
    shared = ablation.trainable_state_dict()
    assert shared and all(torch.equal(v, with_traces.trainable_state_dict()[k]) for k, v in shared.items())


def test_chunks_have_the_configured_length_and_sampling_is_seeded(mu0):
    policy = Mu0Policy(get_policy_preset("policy-tiny"), mu0).eval()
    a = policy.sample(_batch(), torch.Generator().manual_seed(0))
    b = policy.sample(_batch(), torch.Generator().manual_seed(0))
    assert a.shape == (2, 16, 4) and torch.equal(a, b)
    assert policy.cfg.execute == 8 and policy.cfg.num_steps == 10


def test_a_training_step_moves_decoder_and_mixer_but_not_mu0(mu0):
    policy = Mu0Policy(get_policy_preset("policy-tiny"), mu0).train()
    assert not policy.mu0.training  # frozen: eval mode whatever the policy's mode
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    params = [p for p in policy.parameters() if p.requires_grad]
    assert params and all(not p.requires_grad for p in policy.mu0.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    for step in range(2):
        loss = policy.loss(_batch(seed=step), torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert not {n for n in changed if n.startswith("mu0.")}
    assert any(n.startswith("decoder.layers.") for n in changed) and "mixer.gate" in changed
    assert any(n.startswith("mixer.attn.") for n in changed)


def test_padded_chunk_steps_do_not_count(mu0):
    policy = Mu0Policy(get_policy_preset("policy-tiny"), mu0)
    batch = _batch()
    other = dict(batch, actions=batch["actions"].clone())
    other["actions"][-1, 10:] += 100.0  # only masked steps differ
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    torch.testing.assert_close(policy.loss(batch, g())["loss"], policy.loss(other, g())["loss"])
