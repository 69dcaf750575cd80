"""μ0 end to end on the tiny preset: the loss falls on an overfit batch, sampling respects the masks."""

import pytest
import torch

from models.mu0 import Mu0
from models.mu0_batch import check_batch, random_batch
from models.mu0_config import get_model_preset


@pytest.fixture(scope="module")
def tiny_cfg():
    return get_model_preset("mu0-tiny")


def _eval_flow(model, batch, seeds=range(4)):
    with torch.no_grad():
        return sum(model.loss(batch, torch.Generator().manual_seed(s))["flow"].item() for s in seeds) / len(seeds)


def test_flow_loss_halves_on_a_tiny_overfit_batch(tiny_cfg):
    torch.manual_seed(0)
    model = Mu0(tiny_cfg)
    batch = random_batch(tiny_cfg, batch_size=2, n_keypoints=6, seed=1)
    check_batch(batch, tiny_cfg)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=1e-10)
    before = _eval_flow(model, batch)
    for step in range(150):  # overfit: the same 4 noise/time draws the evaluation uses
        out = model.loss(batch, torch.Generator().manual_seed(step % 4))
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 10.0)
        opt.step()
    after = _eval_flow(model, batch)
    assert set(out) == {"loss", "flow", "done", "rigid"}
    assert after < 0.5 * before, (before, after)


def test_sample_shapes_done_init_and_padding_isolation(tiny_cfg):
    model = Mu0(tiny_cfg).eval()
    batch = random_batch(tiny_cfg, batch_size=2, n_keypoints=5, seed=3, depth=True)
    ctrl, done = model.sample(batch, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert ctrl.shape == (2, 5, tiny_cfg.n_ctrl, 3) and done.shape == (2, 5, tiny_cfg.horizon)
    # bias 3.0 at init: 'the trace goes on' (sigmoid(3) = 0.953) on average, whatever the input
    assert abs(done.mean().item() - 0.953) < 0.03 and done.min() > 0.6
    # adaLN-Zero makes every block the identity at init; open the gates so attention matters.
    with torch.no_grad():
        for layer in model.expert.layers:
            layer.ada[1].bias.normal_(0.0, 0.5)
    ctrl, _ = model.sample(batch, num_steps=2, generator=torch.Generator().manual_seed(0))
    # A padding keypoint with wild values must not change the real keypoints' predictions.
    other = dict(batch)
    for key, wild in (("keypoints_uv", 0.9), ("history", 5.0)):
        v = batch[key].clone()
        v[:, -1] = wild
        other[key] = v
    ctrl2, _ = model.sample(other, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ctrl[:, :-1], ctrl2[:, :-1], atol=1e-5)
    # ... while a real keypoint's history does change its prediction
    third = dict(batch)
    third["history"] = batch["history"] + 0.5
    ctrl3, _ = model.sample(third, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert (ctrl3[:, 0] - ctrl[:, 0]).abs().max() > 1e-4


def test_bad_batch_names_the_key(tiny_cfg):
    batch = random_batch(tiny_cfg, batch_size=1, n_keypoints=3)
    batch["history"] = batch["history"][:, :, :4]
    with pytest.raises(ValueError, match="history"):
        check_batch(batch, tiny_cfg)
