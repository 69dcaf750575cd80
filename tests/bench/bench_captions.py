"""Cost of the caption stage: MiniLM load, batched embedding throughput, and template captions per episode.

    python -m tests.bench.bench_captions [--episodes 3] [--steps 120]

Generates Meta-World episodes in a temp dir, runs the extraction stages up to samples once, then
times the `captions` stage alone (template backend) per episode.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=120)
    args = ap.parse_args()

    from models.text_embedder import embed_texts, load_embedder
    from tasks.captions.caption import Captioning
    from tasks.config import get_preset
    from tasks.run.discover import discover
    from tasks.run.episode import STAGES, run_stages
    from tasks.sim.generate import generate_corpus

    t0 = time.perf_counter()
    load_embedder()
    print(f"MiniLM load: {time.perf_counter() - t0:.2f} s")
    texts = [f"the robot gripper moves part {i} by {i % 30} cm to the left" for i in range(900)]
    t0 = time.perf_counter()
    embed_texts(texts)
    print(f"embed 900 captions: {time.perf_counter() - t0:.2f} s")

    cfg = get_preset("sim")
    with tempfile.TemporaryDirectory() as d:
        generate_corpus(Path(d), args.episodes, ["drawer-open", "button-press", "pick-place"], camera="static",
                        max_steps=args.steps, seed=0)
        before = [s for s in STAGES if s.name != "captions"]
        times, n_caps = [], []
        for src in discover(d, cfg):
            ep = run_stages(src, cfg, stages=before)
            t0 = time.perf_counter()
            ep = Captioning().run(ep, cfg.captions)
            times.append(time.perf_counter() - t0)
            n_caps.append(0 if ep.captions is None else len(ep.captions.items))
        print(f"captions stage (template): median {statistics.median(times) * 1000:.0f} ms/episode over {len(times)} "
              f"episodes of {args.steps} steps; captions per episode {n_caps}")


if __name__ == "__main__":
    main()
