"""Depth Anything throughput: real-size V2 Small and Large shapes with random weights (same cost as trained).

    .venv/bin/python -m tests.bench.bench_depth [--shapes small,large] [--frames 64] [--batch-size 8]
        [--input-size 518] [--device auto] [--width 640 --height 360]

Each model is saved with save_pretrained and loaded back through `load_depth_anything` (the path a hub
id takes; bf16 on CUDA), then `predict` runs on `--frames` frames after one warm-up batch. Prints frames/s
and peak memory (CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak RSS).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from flows.environment import apply_defaults

apply_defaults()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.depth_anything import load_depth_anything, save_random_depth_anything  # noqa: E402


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def bench(shape: str, frames: np.ndarray, batch_size: int, input_size: int | None, device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"da-{shape}-") as tmp:
        save_random_depth_anything(tmp, shape)
        model = load_depth_anything(tmp, device)
        n_params = sum(p.numel() for p in model.model.parameters())
        model.predict(frames[:batch_size], batch_size, input_size)  # warm-up: kernels, allocator
        if model.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(model.device)
        t0 = time.perf_counter()
        depth = model.predict(frames, batch_size, input_size)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        load_depth_anything.cache_clear()
        return dict(
            shape=shape, params_m=n_params / 1e6, device=str(model.device), dtype=str(model.dtype).replace("torch.", ""),
            frames=len(frames), seconds=seconds, fps=len(frames) / seconds, peak_gib=peak_memory_gib(model.device),
            finite=bool(np.isfinite(depth).all()),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="small,large", help="comma-separated: tiny, small, large")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--input-size", type=int, default=518, help="0: the checkpoint's own")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    args = ap.parse_args()
    frames = np.random.default_rng(0).integers(0, 255, (args.frames, args.height, args.width, 3), np.uint8)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}, "
          f"frames {args.frames} x {args.width}x{args.height}, batch {args.batch_size}, input {args.input_size or 'saved'}")
    print(f"{'shape':<7}{'params':>9} {'device':<8}{'dtype':<10}{'frames/s':>9}{'s':>8}{'peak GiB':>10}")
    for shape in [s.strip() for s in args.shapes.split(",") if s.strip()]:
        r = bench(shape, frames, args.batch_size, args.input_size or None, args.device)
        print(f"{r['shape']:<7}{r['params_m']:>8.1f}M {r['device']:<8}{r['dtype']:<10}{r['fps']:>9.2f}"
              f"{r['seconds']:>8.2f}{r['peak_gib']:>10.2f}" + ("" if r["finite"] else "  NON-FINITE OUTPUT"))


if __name__ == "__main__":
    main()
