"""CoTracker3 throughput: the real architecture (25M parameters) with random weights (same cost as trained).

    .venv/bin/python -m tests.bench.bench_cotracker [--repo ../shared/vendor/co-tracker] [--frames 8]
        [--queries 100] [--model cotracker3_offline] [--device auto] [--width 320 --height 240] [--threads 0]

The predictor is built by torch.hub from `--repo` (a local directory holding hubconf.py) through
`load_cotracker`, the path the `cotracker` track backend takes (bf16 autocast on CUDA). One warm-up pass on
2 frames, then the tracker's own forward pass (`_one_way`: offline windows or the online stream) over
`--frames` frames with `--queries` queries at frame 0. Prints seconds per frame and seconds per frame per
100 queries (the frames are resized to CoTracker's 384x512 whatever their size), and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from flows.environment import apply_defaults

apply_defaults()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.cotracker import load_cotracker  # noqa: E402
from tasks.config import TrackConfig  # noqa: E402
from tasks.extract.cotracker_track import _one_way  # noqa: E402

VENDOR = Path(__file__).resolve().parents[3] / "shared" / "vendor" / "co-tracker"


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=str(VENDOR))
    ap.add_argument("--model", default="cotracker3_offline", choices=["cotracker3_offline", "cotracker3_online"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--overlap", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_cotracker(args.repo, args.model, "random", args.device)
    load_s = time.perf_counter() - t0
    cfg = TrackConfig(backend="cotracker", window=args.window, overlap=args.overlap)
    rng = np.random.default_rng(0)
    video = torch.from_numpy(rng.integers(0, 256, (args.frames, 3, args.height, args.width), dtype=np.uint8))
    qf = np.zeros(args.queries, np.int64)
    quv = (rng.uniform(0, 1, (args.queries, 2)) * [args.width - 1, args.height - 1]).astype(np.float32)
    _one_way(model, video[:2], qf, quv, cfg)  # warm-up: kernels, allocator
    if model.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(model.device)
    t0 = time.perf_counter()
    uv, vis = _one_way(model, video, qf, quv, cfg)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    per_frame = seconds / args.frames
    print(
        f"{args.model} on {model.device} ({torch.get_num_threads()} threads): load {load_s:.1f} s; {args.frames} frames "
        f"x {args.queries} queries in {seconds:.1f} s = {per_frame:.2f} s/frame, "
        f"{per_frame * 100 / args.queries:.2f} s/frame/100 queries; peak {peak_memory_gib(model.device):.2f} GiB; "
        f"finite {bool(np.isfinite(uv).all())}"
    )


if __name__ == "__main__":
    main()
