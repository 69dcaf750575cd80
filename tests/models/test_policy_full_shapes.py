"""policy-full has the published shapes (gemma_300m-sized decoder, 100 trace tokens), built on the meta device."""

from __future__ import annotations

import torch

from models.policy.config import get_policy_preset
from models.policy.decoder import ActionDecoder
from models.policy.guidance import pool_grid
from models.policy.mixer import GatedMotionMixer


def test_full_preset_shapes_and_parameter_count_without_weights():
    cfg = get_policy_preset("policy-full")
    assert (cfg.width, cfg.depth, cfg.mlp_dim, cfg.heads, cfg.kv_heads, cfg.head_dim) == (1024, 18, 4096, 8, 1, 256)
    assert (cfg.grid, cfg.n_keypoints, cfg.n_trace_tokens, cfg.action_dim, cfg.state_dim) == (20, 400, 100, 12, 16)
    assert (cfg.chunk, cfg.execute, cfg.num_steps, cfg.mixer_heads) == (16, 8, 10, 16)
    with torch.device("meta"):
        dec = ActionDecoder(cfg)
        mixer = GatedMotionMixer(2048, 1024, cfg.mixer_heads)  # SmolVLM2-2.2B text width, μ0-full expert width
        pooled = pool_grid(torch.empty(2, 400, 1024), cfg.grid)
    W, F, hd = 1024, 4096, 256
    per_layer_core = W * 8 * hd + 2 * W * 1 * hd + 8 * hd * W + 3 * W * F  # q, k, v, o, GeGLU
    core = sum(p.numel() for n, p in dec.named_parameters() if ".norm" not in n and "_norm" not in n and n.startswith("layers."))
    assert per_layer_core == 17_301_504 and core == 18 * per_layer_core == 311_427_072  # gemma_300m
    ada = 2 * 18 * (W + 3 * W * W + 3 * W) + (W + 3 * W * W + 3 * W)  # per-layer and final adaRMS norms
    time_mlp = 256 * W + W + W * W + W
    io = 2 * (12 * W) + W + 12
    assert sum(p.numel() for p in dec.parameters()) == core + ada + time_mlp + io
    assert dec.layers[0].k_proj.weight.shape == (256, 1024) and dec.layers[0].q_proj.weight.shape == (2048, 1024)
    assert mixer.attn.num_heads == 16 and mixer.trace_proj.weight.shape == (2048, 1024)
    assert sum(p.numel() for p in mixer.parameters()) == 2 * 2048 + (1024 * 2048 + 2048) + 4 * 2048 * 2048 + 4 * 2048 + 1
    assert pooled.shape == (2, 100, 1024)
