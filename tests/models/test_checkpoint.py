"""Checkpoints: safetensors + JSON round trip gives identical samples; optimizer state and step resume."""

import pytest
import torch

from models.checkpoint import latest_checkpoint, load_checkpoint, load_optimizer_state, read_step, save_checkpoint
from models.mu0 import Mu0
from models.mu0_batch import random_batch
from models.mu0_config import get_model_preset


def test_round_trip_identical_predictions_and_resume(tmp_path):
    cfg = get_model_preset("mu0-tiny", seed=3)
    model = Mu0(cfg)
    batch = random_batch(cfg, batch_size=1, n_keypoints=4, seed=2)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    out = model.loss(batch, torch.Generator().manual_seed(0))
    out["loss"].backward()
    opt.step()  # weights now differ from a fresh build: the checkpoint must carry them
    ckpt = save_checkpoint(model, tmp_path / "step-000001", step=1, optimizer=opt)
    assert {p.name for p in ckpt.iterdir()} >= {"model.safetensors", "config.json", "trainer_state.json", "optimizer.safetensors"}
    assert not any(p.suffix in {".pt", ".bin", ".pkl"} for p in ckpt.iterdir())

    loaded, step = load_checkpoint(ckpt)
    assert step == 1 and loaded.cfg == cfg
    a, da = model.eval().sample(batch, num_steps=2, generator=torch.Generator().manual_seed(5))
    b, db = loaded.eval().sample(batch, num_steps=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(da, db)

    opt2 = torch.optim.AdamW(loaded.trainable_parameters(), lr=1e-3)
    assert load_optimizer_state(opt2, ckpt)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)
    save_checkpoint(loaded, tmp_path / "step-000002", step=2, optimizer=opt2)
    assert latest_checkpoint(tmp_path).name == "step-000002" and read_step(latest_checkpoint(tmp_path)) == 2


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)
    assert latest_checkpoint(tmp_path / "none") is None


def test_frozen_backbone_is_not_copied_but_reloaded_from_its_source(tmp_path):
    from safetensors import safe_open

    from models.backbone import save_tiny_vlm

    vlm = save_tiny_vlm(tmp_path / "vlm", image_size=32, n_layers=2)
    cfg = get_model_preset("mu0-tiny", backbone=str(vlm), backbone_layers=2, image_size=32, train_expert_only=True)
    model = Mu0(cfg)
    ckpt = save_checkpoint(model, tmp_path / "ckpt", step=7)
    with safe_open(ckpt / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("backbone.vlm.text_model") for k in keys)
    assert any("lora_a" in k for k in keys) and any(k.startswith("expert.") for k in keys)
    batch = random_batch(cfg, batch_size=1, n_keypoints=3, seed=4)
    loaded, step = load_checkpoint(ckpt)
    a, _ = model.eval().sample(batch, num_steps=2, generator=torch.Generator().manual_seed(1))
    b, _ = loaded.eval().sample(batch, num_steps=2, generator=torch.Generator().manual_seed(1))
    assert step == 7 and torch.equal(a, b)
