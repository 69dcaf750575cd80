"""Camera-pose estimation (open3d backend) against Meta-World ground truth: accuracy, speed, scaling.

    .venv/bin/python -m tests.bench.bench_pose --episodes 5 --seed 0
    .venv/bin/python -m tests.bench.bench_pose --episodes 1 --long 600   # quick check

Per orbit-camera episode: camera-centre ATE (cm, estimate mapped into the true world by w2c_gt[0]),
mean/max rotation error, pose-stage fps, and the tracks lifted with estimated vs given poses
(static drift, moving median, tasks/sim/score.py). Then the scaling check: one episode's frames,
depth and poses ping-ponged to 250 and `--long` frames; the pose time ratio must stay <= 12 for
3000 vs 250 frames (linear).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from flows.environment import apply_defaults

apply_defaults()

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import numpy as np  # noqa: E402
import open3d  # noqa: E402,F401  (imported up front: the first pose stage would otherwise count its import)

from tasks.config import get_preset, with_overrides  # noqa: E402
from tasks.extract.decode import decode  # noqa: E402
from tasks.run.discover import discover  # noqa: E402
from tasks.extract.pose import estimate_camera_poses  # noqa: E402
from tasks.sim.pose_score import grade_estimated, pose_errors, true_w2c  # noqa: E402
from tasks.sim.score import grade_episode  # noqa: E402

TASKS = ["pick-place", "drawer-open", "button-press", "push", "reach"]


def ping_pong(x: np.ndarray, n: int) -> np.ndarray:
    """First n items of x, x reversed, x, ... (a long episode that stays smooth at the turns)."""
    idx = np.concatenate([np.arange(len(x)), np.arange(len(x) - 2, 0, -1)])
    return x[np.resize(idx, n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--short", type=int, default=250)
    ap.add_argument("--long", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3, help="time each length this many times, keep the best")
    ap.add_argument("--md", type=Path)
    args = ap.parse_args()

    from tasks.sim.generate import generate_corpus

    corpus = Path(tempfile.mkdtemp(prefix="mu0-pose-"))
    generate_corpus(corpus, args.episodes, TASKS, camera="orbit", max_steps=args.max_steps, seed=args.seed)
    given_cfg = get_preset("sim")
    cfg = with_overrides(given_cfg, {"pose.backend": "open3d"})
    header = [
        "episode", "frames", "ATE cm", "rot mean deg", "rot max deg", "pose fps",
        "static drift cm est / given", "moving median cm est / given",
    ]
    t = Table(title=f"estimated camera poses vs ground truth (orbit camera, seeds {args.seed}..)")
    for h in header:
        t.add_column(h, justify="right")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sources = discover(str(corpus), cfg)
    for src in sources:
        ep, pose, est = grade_estimated(src, cfg)
        _, given = grade_episode(src, given_cfg)
        row = [
            Path(src.uri).name, str(ep.n_frames), f"{pose.ate_cm:.3f}", f"{pose.rot_mean_deg:.3f}",
            f"{pose.rot_max_deg:.3f}", f"{ep.n_frames / ep.timings['pose']:.0f}",
            f"{est.static_drift_median_cm:.3f} / {given.static_drift_median_cm:.3f}",
            f"{est.moving_median_cm:.3f} / {given.moving_median_cm:.3f}",
        ]
        t.add_row(*row)
        md.append("| " + " | ".join(row) + " |")
    Console().print(t)

    ep = decode(sources[0], cfg.decode)
    gt = true_w2c(ep)
    s = Table(title=f"pose time vs length ({Path(sources[0].uri).name} ping-ponged)")
    for h in ("frames", "seconds", "fps", "ATE cm", "rot mean deg"):
        s.add_column(h, justify="right")
    secs = {}
    for n in (args.short, args.long):
        frames, depth = ping_pong(ep.frames, n), ping_pong(ep.depth, n)  # building the input is not timed
        secs[n] = float("inf")
        for _ in range(args.repeat):  # best of `repeat`: the short run is ~1.5 s, where noise moves the ratio
            t0 = time.perf_counter()
            est_poses = estimate_camera_poses(frames, depth, ep.K, cfg.pose)
            secs[n] = min(secs[n], time.perf_counter() - t0)
        pe = pose_errors(np.linalg.inv(est_poses.c2w), ping_pong(gt, n))
        s.add_row(str(n), f"{secs[n]:.2f}", f"{n / secs[n]:.0f}", f"{pe.ate_cm:.3f}", f"{pe.rot_mean_deg:.3f}")
    Console().print(s)
    ratio = secs[args.long] / secs[args.short]
    Console().print(f"time ratio {args.long} / {args.short} frames: {ratio:.2f} (linear: {args.long / args.short:.0f}; limit 12 for 3000/250)")
    if args.md:
        args.md.write_text("\n".join(md) + f"\n\ntime ratio {args.long}/{args.short}: {ratio:.2f}\n")


if __name__ == "__main__":
    main()
