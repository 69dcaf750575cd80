"""One mu0-full-shaped training step (random weights, no downloads): step time and peak GPU memory.

    python -m tests.bench.bench_mu0_step              # CUDA: bf16 autocast, gradient checkpointing, batch 2
    python -m tests.bench.bench_mu0_step --tiny       # any machine: the mu0-tiny preset at batch 8 x 32

The backbone is a SmolVLM2-2.2B-Instruct-shaped model (config written below from the released
config.json as remembered: SmolLM2-1.7B text 2048 wide, 24 layers, 32 heads; SigLIP so400m vision 1152 wide,
27 layers, patch 14; pixel shuffle 3), saved with save_pretrained into a temp dir and loaded through
the same from_pretrained path as the hub id, truncated to 20 layers, frozen; the expert is 1024 wide.
DINOv2-base-shaped (768 wide, 12 layers, patch 14) random model likewise.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from models.mu0 import Mu0
from models.mu0_batch import random_batch
from models.mu0_config import get_model_preset


def smolvlm2_2b_config():
    from transformers import SmolVLMConfig

    return SmolVLMConfig(
        text_config=dict(
            model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
            num_attention_heads=32, num_key_value_heads=32, vocab_size=49280, max_position_embeddings=16384,
            rope_theta=130000.0, rms_norm_eps=1e-5,
        ),
        vision_config=dict(
            hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
            image_size=384, patch_size=14,
        ),
        scale_factor=3,
        image_token_id=49190,
    )


def write_random_models(root: str) -> tuple[str, str]:
    from transformers import Dinov2Config, Dinov2Model, SmolVLMForConditionalGeneration

    from models.backbone import tiny_tokenizer

    vlm_dir, dino_dir = f"{root}/vlm", f"{root}/dino"
    SmolVLMForConditionalGeneration(smolvlm2_2b_config()).save_pretrained(vlm_dir)
    tok = tiny_tokenizer()  # the tokenizer's vocabulary does not change the step cost
    tok.save_pretrained(vlm_dir)
    Dinov2Model(Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                             image_size=518, patch_size=14)).save_pretrained(dino_dir)
    return vlm_dir, dino_dir


def step_time(model, batch, steps: int, device: torch.device, bf16: bool) -> float:
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=1e-10)
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 10.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times[1:] or times)[len(times[1:] or times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="run the mu0-tiny preset (CPU is fine)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--keypoints", type=int, default=None)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if args.tiny:
        cfg = get_model_preset("mu0-tiny")
        B, N = args.batch or 8, args.keypoints or 32
        model = Mu0(cfg).to(device).train()
        batch = random_batch(cfg, B, N, device=device)
        t = step_time(model, batch, args.steps, device, bf16=False)
        n = sum(p.numel() for p in model.parameters())
        print(f"mu0-tiny {n / 1e6:.2f}M params, batch {B} x {N} kp on {device}: {t * 1000:.0f} ms/step = {1 / t:.1f} steps/s")
        return
    if not cuda:
        print("bench_mu0_step: the mu0-full step needs a CUDA GPU (~20+ GB); none found. Use --tiny on CPU.")
        return
    with tempfile.TemporaryDirectory() as root:
        vlm_dir, dino_dir = write_random_models(root)
        cfg = get_model_preset("mu0-full", backbone=vlm_dir, dino=dino_dir)
        model = Mu0(cfg).to(device).train()
    model.gradient_checkpointing_enable()
    B, N = args.batch or 2, args.keypoints or 256
    batch = random_batch(cfg, B, N, depth=True, device=device)
    torch.cuda.reset_peak_memory_stats()
    t = step_time(model, batch, args.steps, device, bf16=True)
    peak = torch.cuda.max_memory_allocated() / 2**30
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.trainable_parameters())
    print(f"mu0-full-shaped: {total / 1e9:.2f}B params ({train / 1e6:.0f}M trainable), batch {B} x {N} kp, "
          f"image {cfg.image_size}, depth on, bf16 autocast, grad checkpointing, {torch.cuda.get_device_name()}")
    print(f"step {t * 1000:.0f} ms (median of {args.steps - 1}), peak memory {peak:.1f} GiB")


if __name__ == "__main__":
    main()
