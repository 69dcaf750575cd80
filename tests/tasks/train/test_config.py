"""The pretraining config holds its model config: --set reaches model fields, JSON round-trips, old forms load."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from models.device import DeviceUnavailable, resolve_device
from models.mu0_config import MODEL_PRESETS, get_model_preset
from tasks.config import SettingError, with_overrides
from tasks.train.batches import BatchConfig
from tasks.train.config import PretrainConfig


def test_model_fields_are_settings_of_the_run():
    cfg = with_overrides(PretrainConfig(), {"model.lora_rank": 2, "model.horizon": 16, "lr": 3e-4})
    assert (cfg.model.lora_rank, cfg.model.horizon, cfg.lr) == (2, 16, 3e-4)
    assert cfg.model.preset == "mu0-tiny" and cfg.model.backbone == MODEL_PRESETS["mu0-tiny"].backbone
    with pytest.raises(SettingError, match=r"unknown setting 'model.lora_rnk'; model has: .* Did you mean 'model.lora_rank'"):
        with_overrides(cfg, {"model.lora_rnk": 2})
    with pytest.raises(SettingError, match="n_ctrl must be 4, 7 or 10, got 5"):  # the model's own checks still run
        with_overrides(cfg, {"model.n_ctrl": 5})


def test_model_by_preset_name_resolved_once():
    cfg = with_overrides(PretrainConfig(), {"model": "mu0-full"})
    assert cfg.model == MODEL_PRESETS["mu0-full"] and cfg.model.preset == "mu0-full"
    with pytest.raises(ValidationError, match="unknown model preset 'mu0-ful'.*Did you mean 'mu0-full'"):
        PretrainConfig(model="mu0-ful")


def test_nested_config_round_trips_through_json():
    cfg = PretrainConfig(model=get_model_preset("mu0-tiny", max_keypoints=8, lora_rank=2), steps=7, betas=(0.9, 0.99))
    back = PretrainConfig.model_validate(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert back == cfg and back.model.max_keypoints == 8 and back.betas == (0.9, 0.99)


def test_the_flat_form_of_older_callers_and_run_files_still_validates():
    old = {"model_preset": "mu0-tiny", "steps": 3, "max_keypoints": 8, "seed": 4, "out_dir": "runs/x"}
    cfg = PretrainConfig.model_validate(old)
    assert cfg.model == get_model_preset("mu0-tiny", max_keypoints=8, seed=4)  # one seed initialised the model too
    assert (cfg.steps, cfg.seed, cfg.out_dir) == (3, 4, "runs/x")
    assert PretrainConfig(model_preset="mu0-full").model == get_model_preset("mu0-full")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PretrainConfig(stpes=3)


def test_batch_shapes_come_from_the_model_config():
    model = get_model_preset("mu0-tiny", image_size=32, history_len=16, n_ctrl=7, ctrl_group=7, horizon=24,
                             max_keypoints=12, use_depth=False)
    b = BatchConfig.for_model(model, depth_drop=0.0)
    assert (b.image_size, b.history_len, b.n_ctrl, b.horizon, b.max_keypoints, b.use_depth) == (32, 16, 7, 24, 12, False)
    assert b.depth_drop == 0.0 and b.fit_lambda == BatchConfig().fit_lambda


def test_one_device_resolver_refuses_a_missing_gpu_up_front():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailable, match="'cuda' was asked for, but torch sees no CUDA GPU"):
        resolve_device("cuda")
