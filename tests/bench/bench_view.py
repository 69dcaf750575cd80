"""How long the viewers take on one ingested sim episode: scene load, point cloud, overlay PNG, mp4, rrd.

Run on a quiet machine: `python -m tests.bench.bench_view [--steps 120]` (makes its own corpus and dataset
in a temp dir; prints one line per step, median of --repeat runs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120, help="frames of the sim episode")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from storage.dataset import existing_episode_ids
    from tasks.config import get_preset
    from tasks.run.ingest import ingest
    from tasks.view.overlay import overlay_png, write_overlay_mp4
    from tasks.view.scene import load_scene, point_cloud, read_rgbd
    from tasks.sim.generate import generate_corpus
    from tasks.view.rerun_recording import write_rrd

    out = Path(tempfile.mkdtemp(prefix="mu0-bench-view-"))
    generate_corpus(out / "corpus", 1, ["drawer-open"], camera="static", max_steps=args.steps, seed=0)
    cfg = get_preset("sim")
    root = str(out / "traces")
    ingest(str(out / "corpus"), root, cfg)
    (eid,) = existing_episode_ids(root)
    scene = load_scene(root, eid)
    rgb, depth = read_rgbd(scene, 0)
    rows = {
        "load_scene": timed(lambda: load_scene(root, eid), args.repeat),
        "read_rgbd (1 frame)": timed(lambda: read_rgbd(scene, 0), args.repeat),
        "point_cloud (stride 1)": timed(lambda: point_cloud(depth, rgb, scene.K, scene.w2c[0]), args.repeat),
        "overlay_png": timed(lambda: overlay_png(root, eid), args.repeat),
        f"write_overlay_mp4 ({scene.n_frames} frames)": timed(lambda: write_overlay_mp4(root, eid, out / "o.mp4"), args.repeat),
        f"write_rrd ({scene.n_frames} frames)": timed(lambda: write_rrd(root, eid, out / "o.rrd"), args.repeat),
    }
    print(f"episode {eid[:12]}: {scene.n_frames} frames {scene.width}x{scene.height}, {len(scene.is_moving)} tracks")
    for k, v in rows.items():
        print(f"{k:32s} {1000 * v:9.1f} ms")
    print(f"rrd size {(out / 'o.rrd').stat().st_size / 1e6:.1f} MB, mp4 size {(out / 'o.mp4').stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
