"""The VLM adapter: truncation, freezing, loading by local dir like a hub id, errors, image/prompt prep."""

import numpy as np
import pytest
import torch

from models.backbone import BackboneUnavailable, VLMBackbone, build_prompt, resize_with_pad, save_tiny_vlm
from models.lora import LoRALinear
from models.mu0_config import get_model_preset


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    return save_tiny_vlm(tmp_path_factory.mktemp("vlm"), image_size=32, n_layers=4, seed=0)


def test_local_dir_loads_truncated_and_frozen(tiny_vlm_dir):
    cfg = get_model_preset("mu0-tiny", backbone=str(tiny_vlm_dir), backbone_layers=2, train_expert_only=True, image_size=32)
    bb = VLMBackbone(cfg)
    assert bb.num_layers == 2 and bb.text_config.num_hidden_layers == 2
    frozen = [n for n, p in bb.named_parameters() if not p.requires_grad]
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert any("text_model.layers.1" in n for n in frozen) and any("vision_model" in n for n in frozen)
    # only the depth path (LoRA adapters + cloned stem) learns
    assert trainable and all("lora_" in n or n.startswith("depth_patch_embedding") for n in trainable)
    image = torch.zeros(2, 3, 32, 32)
    pre = bb(image, ["open the drawer", ""])
    assert len(pre.keys) == 2 and pre.keys[0].shape[0] == 2 and pre.keys[0].shape[2] == pre.valid.shape[1]
    assert not pre.keys[0].requires_grad  # frozen, no depth: no graph kept
    # depth tokens enter the prefix only for samples that have depth
    pre_d = bb(image, ["open the drawer", ""], depth_image=image, has_depth=torch.tensor([True, False]))
    n_img = 16 // 4  # (32/8)^2 patches, pixel shuffle 2
    assert pre_d.valid.shape[1] == pre.valid.shape[1] + n_img
    assert pre_d.valid[0, n_img : 2 * n_img].all() and not pre_d.valid[1, n_img : 2 * n_img].any()


def test_lora_starts_as_the_base_layer():
    base = torch.nn.Linear(4, 3)
    lora = LoRALinear(base, rank=2, alpha=4.0)
    x = torch.randn(5, 4)
    lora.active = True
    assert torch.equal(lora(x), base(x))


def test_missing_model_id_is_named(tmp_path):
    cfg = get_model_preset("mu0-tiny", backbone="no-such-org/no-such-vlm")
    with pytest.raises(BackboneUnavailable, match="no-such-org/no-such-vlm"):
        VLMBackbone(cfg)
    cfg = get_model_preset("mu0-tiny", backbone=str(tmp_path / "missing"))
    with pytest.raises(BackboneUnavailable, match="missing"):
        VLMBackbone(cfg)


def test_resize_with_pad_and_prompt():
    img = np.full((20, 40, 3), 255, np.uint8)
    out = resize_with_pad(img, 16)
    assert out.shape == (3, 16, 16) and out.min() == -1.0 and out.max() == 1.0
    assert torch.all(out[:, :4] == -1) and torch.all(out[:, 12:] == -1)  # centred: 4 padding rows each side
    assert torch.allclose(out[:, 4:12], torch.ones(3, 8, 16), atol=1e-5)
    assert build_prompt("") == "Task: predict future trajectory\n"
    assert build_prompt("open the drawer") == "Task: open the drawer\n"
