"""Depth Anything adapter: a tiny random model saved with save_pretrained loads like a hub checkpoint."""

import json

import numpy as np
import pytest
import torch

from models.depth_anything import (
    DepthModelUnavailable,
    load_depth_anything,
    random_depth_anything,
    save_random_depth_anything,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_random_depth_anything(tmp_path_factory.mktemp("tiny-da"))


def test_saved_directory_has_the_hub_layout(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= names
    cfg = json.loads((tiny_dir / "config.json").read_text())
    assert cfg["model_type"] == "depth_anything" and cfg["depth_estimation_type"] == "metric"


def test_loads_through_the_hub_path_and_is_cached(tiny_dir):
    da = load_depth_anything(str(tiny_dir))
    assert type(da.model).__name__ == "DepthAnythingForDepthEstimation"
    assert type(da.processor).__name__ == "DPTImageProcessorPil"  # no torchvision needed
    assert 70_000 < sum(p.numel() for p in da.model.parameters()) < 80_000
    assert da.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert load_depth_anything(str(tiny_dir)) is da  # a worker loads the weights once


def test_predict_matches_a_direct_forward_pass(tiny_dir):
    da = load_depth_anything(str(tiny_dir), "cpu")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 42, 84, 3), np.uint8)
    depth = da.predict(frames, batch_size=2)
    assert depth.shape == (3, 42, 84) and np.isfinite(depth).all()
    # The processor resizes 42x84 to 56x112 (aspect kept, multiple of 14); our output resizes back.
    pixels = da.processor(images=list(frames), return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape[-2:]) == (56, 112)
    with torch.no_grad():
        raw = da.model(pixel_values=pixels).predicted_depth
    resized = torch.nn.functional.interpolate(raw[:, None], size=(42, 84), mode="bilinear")[:, 0].numpy()
    np.testing.assert_allclose(depth, resized, rtol=1e-4, atol=1e-5)
    assert depth.mean() == pytest.approx(raw.mean().item(), rel=0.05)


def test_input_size_changes_the_model_resolution(tiny_dir):
    da = load_depth_anything(str(tiny_dir), "cpu")
    frames = np.random.default_rng(1).integers(0, 255, (1, 42, 84, 3), np.uint8)
    # keep_aspect_ratio takes the scale nearer 1: 224 makes 42x84 -> 112x224 instead of the saved 56x112.
    assert not np.allclose(da.predict(frames), da.predict(frames, input_size=224), atol=1e-3)


def test_small_shape_matches_the_released_parameter_count():
    model, processor = random_depth_anything("small")
    n = sum(p.numel() for p in model.parameters())
    assert 24.5e6 < n < 25.1e6, n  # Depth-Anything-V2-Small: 24.8M
    assert processor.size == {"height": 518, "width": 518}


def test_a_cuda_request_without_a_gpu_is_explained(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DepthModelUnavailable, match="no CUDA GPU"):
        load_depth_anything(str(tiny_dir), "cuda")
