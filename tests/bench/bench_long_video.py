"""Long-video benchmark: peak RSS of progressive tracking (stage 3, classical backend) against video length.

    nice -n 10 .venv/bin/python -m tests.bench.bench_long_video --minutes 1,5,30 --fps 10 --md /tmp/long-video.md

The video is the synthetic scene of tests/tasks/extract/scenes.py at 160x120 (a textured wall 2 m away, a box
sliding in front of it, a second box appearing halfway), static camera, exact depth, `generic` preset (chunks of
360 frames sharing 60) with `keypoints.reseed_every=50 keypoints.max_points=400` (`SETS`: the pure-Python LK
loop costs per batch and frame, so the defaults' 2000 points seeded every 10 frames would take hours on a
30-minute video on two cores) and any `--set` overrides. Every (length, mode) runs in its own child process,
so its peak RSS (`ru_maxrss`, which only ever grows) is its own. Two modes:

- `stream`: frames, depth and grey are rendered one chunk at a time (`SceneVideo.window`, what a streaming
  decoder would hand the tracker) and `track_progressive` reads them chunk by chunk;
- `episode`: the whole video is rendered into an `Episode` first (frames, depth, edge-cleaned depth, grey),
  as the ingest pipeline holds it after stage 2 today, then the `Track` stage runs on it.

Recorded: RSS once the input is ready (`before`), the peak, the outputs' bytes (tracks_uv (N,T,2) float32 +
visible (N,T) bool: they grow with N x T by definition), tracks kept, and seconds. What the tracker itself
holds is the peak less `before` less the outputs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MiB = 1 << 20
WIDTH, HEIGHT = 160, 120
SETS = {"keypoints.reseed_every": 50, "keypoints.max_points": 400}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(n_frames: int, mode: str, sets: dict) -> dict:
    """One run in this process: the numbers of one table row."""
    from tasks.config import get_preset, with_overrides
    from tasks.extract.progressive import Seeds, track_progressive
    from tasks.extract.track import Track
    from tests.tasks.extract.scenes import SceneVideo

    s = Track().settings(with_overrides(get_preset("generic"), sets))
    scene = SceneVideo(n_frames, WIDTH, HEIGHT, enter=n_frames // 2)
    if mode == "episode":
        ep = scene.episode(s.keypoints, s.track.window_px)
        before, t0 = _rss_mib(), time.perf_counter()
        out = Track().run(ep, s)
    else:
        seeds = Seeds(*scene.first_seeds(s.keypoints, s.track.window_px))
        before, t0 = _rss_mib(), time.perf_counter()
        out = track_progressive(scene, seeds, s.track, s.keypoints, s.coverage_grid)
    seconds = time.perf_counter() - t0
    outputs = (out.tracks_uv.nbytes + out.visible.nbytes) / MiB
    return {"frames": n_frames, "mode": mode, "before_mib": round(before, 1), "peak_mib": round(_rss_mib(), 1),
            "outputs_mib": round(outputs, 1), "tracks": int(len(out.query_frame)), "seconds": round(seconds, 1),
            "visible_at_end": int(out.visible[:, -1].sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="1,5,30")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--modes", default="stream,episode")
    ap.add_argument("--episode-max-minutes", type=float, default=5.0,
                    help="episode mode holds the whole video in memory: skip it above this length")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    ap.add_argument("--md", help="also write the table as markdown here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import yaml

    sets = SETS | {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    if args.child:
        n, mode = args.child.split(":")
        print(json.dumps(child(int(n), mode, sets)))
        return
    rows = []
    for minutes in (float(m) for m in args.minutes.split(",")):
        n = int(round(minutes * 60 * args.fps))
        for mode in args.modes.split(","):
            if mode == "episode" and minutes > args.episode_max_minutes:
                continue
            cmd = [sys.executable, "-m", "tests.bench.bench_long_video", "--child", f"{n}:{mode}"]
            cmd += [a for kv in args.set for a in ("--set", kv)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = {"minutes": minutes, **json.loads(res.stdout.strip().splitlines()[-1])}
            row["tracker_mib"] = round(row["peak_mib"] - row["before_mib"] - row["outputs_mib"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cols = ["minutes", "frames", "mode", "before_mib", "peak_mib", "outputs_mib", "tracker_mib", "tracks",
            "visible_at_end", "seconds"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    print("\n".join(md))
    if args.md:
        with open(args.md, "w") as fh:
            fh.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
