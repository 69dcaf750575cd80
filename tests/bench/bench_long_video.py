"""Long-video benchmark: peak RSS of progressive tracking (stage 3, classical backend) and of the whole ingest
against video length.

    nice -n 10 .venv/bin/python -m tests.bench.bench_long_video --minutes 1,5,30 --fps 10 --md /tmp/long-video.md
    nice -n 10 .venv/bin/python -m tests.bench.bench_long_video --modes ingest,ingest-held --minutes 1,5,30

The video is the synthetic scene of tests/tasks/extract/scenes.py at 160x120 (a textured wall 2 m away, a box
sliding in front of it, a second box appearing halfway), static camera, exact depth, `generic` preset (chunks of
360 frames sharing 60) with `keypoints.reseed_every=50 keypoints.max_points=400` (`SETS`: the pure-Python LK
loop costs per batch and frame, so the defaults' 2000 points seeded every 10 frames would take hours on a
30-minute video on two cores) and any `--set` overrides. Every (length, mode) runs in its own child process,
so its peak RSS (`ru_maxrss`, which only ever grows) is its own. Two modes:

- `stream`: frames, depth and grey are rendered one chunk at a time (`SceneVideo.window`, what a streaming
  decoder would hand the tracker) and `track_progressive` reads them chunk by chunk;
- `episode`: the whole video is rendered into an `Episode` first (frames, depth, edge-cleaned depth, grey),
  as an ingest holding the episode in memory has it after stage 2, then the `Track` stage runs on it;
- `ingest`: the whole pipeline (`process_episode`, decode to the written fragments, captions off) on an episode
  directory made beforehand by the parent process (video.mp4, depth.npy, cameras.npz, meta.json), with
  `decode.spill_mb=0`: every per-pixel array in spill files, read a block at a time (tasks/extract/spill.py);
- `ingest-held`: the same with `decode.spill_mb` out of reach (every array in memory, as before spilling);
  skipped above `--episode-max-minutes` like `episode`.
Both ingest modes lift `decode.max_frames` above the video's length.

`--cut-every S` cuts between two walls every S seconds, so the wall's tracks end at each cut and later chunks
must seed new ones (the `max_points` top-up); without it almost every track lives to the end.

For the ingest modes `to_entities` is the peak RSS once the stages that read pixels are done (decode to entities),
before the samples are built; `outputs` also counts the samples (future and history points with their masks, uv, track
and cluster per sample), which the `samples` table's rows copy once more while they are written.

Recorded: RSS once the input is ready (`before`), the peak, the outputs' bytes (tracks_uv (N,T,2) float32 +
visible (N,T) bool: they grow with N x T by definition), tracks kept, and seconds. What the tracker itself
holds is the peak less `before` less the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
WIDTH, HEIGHT = 160, 120
SETS = {"keypoints.reseed_every": 50, "keypoints.max_points": 400}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(n_frames: int, mode: str, sets: dict, cut_every: int = 0) -> dict:
    """One run in this process: the numbers of one table row."""
    from tasks.config import get_preset, with_overrides
    from tasks.extract.progressive import Seeds, track_progressive
    from tasks.extract.track import Track
    from tests.tasks.extract.scenes import SceneVideo

    if mode.startswith("ingest"):
        return _ingest_child(n_frames, mode, sets, cut_every)
    s = Track().settings(with_overrides(get_preset("generic"), sets))
    scene = SceneVideo(n_frames, WIDTH, HEIGHT, enter=n_frames // 2, cut_every=cut_every or None)
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


def episode_dir(n_frames: int, fps: float, cut_every: int, root: Path) -> Path:
    """The scene as an episode directory (video.mp4, depth.npy, cameras.npz, meta.json), rendered a window at a
    time; made once per length and reused."""
    import av
    import numpy as np

    from tests.tasks.extract.scenes import SceneVideo

    out = root / f"scene-{n_frames}-{cut_every}"
    if (out / "meta.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    scene = SceneVideo(n_frames, WIDTH, HEIGHT, enter=n_frames // 2, cut_every=cut_every or None)
    depth = np.lib.format.open_memmap(out / "depth.npy", "w+", np.float32, (n_frames, HEIGHT, WIDTH))
    with av.open(str(out / "video.mp4"), "w") as c:
        st = c.add_stream("libx264", rate=int(fps), options={"crf": "18"})
        st.width, st.height, st.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(n_frames):
            gray, z = scene.render(t)
            depth[t] = z
            for p in st.encode(av.VideoFrame.from_ndarray(np.repeat(gray[..., None], 3, -1), format="rgb24")):
                c.mux(p)
            if t % 1000 == 999:
                depth.flush()
        for p in st.encode():
            c.mux(p)
    del depth
    np.savez(out / "cameras.npz", K=scene.K, w2c=np.tile(np.eye(4), (n_frames, 1, 1)))
    (out / "meta.json").write_text(json.dumps({"fps": fps, "task": "a box slides in front of a wall"}))
    return out


def _ingest_child(n_frames: int, mode: str, sets: dict, cut_every: int) -> dict:
    from tasks.config import get_preset, with_overrides
    from tasks.extract.spill import remove_spill
    from tasks.run.discover import discover
    from tasks.run.episode import run_stages, write_episode

    folder = Path(os.environ["MU0_BENCH_EPISODE"])
    spill = {"decode.spill_mb": 0} if mode == "ingest" else {"decode.spill_mb": 1e9}
    cfg = with_overrides(get_preset("generic"), {
        **sets, **spill, "decode.max_frames": n_frames + 1, "depth.backend": "given", "pose.backend": "given",
        "captions.backend": "off"})
    src = discover(str(folder), cfg)[0]
    before, t0 = _rss_mib(), time.perf_counter()
    peaks: dict[str, float] = {}  # ru_maxrss after each stage (process_episode's steps, the frames written inline)
    ep = run_stages(src, cfg, after=lambda name, _: peaks.__setitem__(name, round(_rss_mib(), 1)))
    with tempfile.TemporaryDirectory() as root:
        write_episode(ep, cfg, root)
    remove_spill(ep.spill_dir)
    seconds = time.perf_counter() - t0
    T, L = ep.n_frames, cfg.retarget.future_len + cfg.retarget.history_len
    tracks = ep.n_tracks * T * (2 * 4 + 3 * 4 + 1)  # tracks_uv + tracks_xyz + visible
    samples = ep.n_samples * (L * (3 * 4 + 1) + 2 * 4 + 4 + 4)  # future/history + valid, uv, track, cluster
    return {"frames": T, "mode": mode, "before_mib": round(before, 1), "peak_mib": round(_rss_mib(), 1),
            "outputs_mib": round((tracks + samples) / MiB, 1), "tracks": ep.n_tracks, "seconds": round(seconds, 1),
            "status": f"{ep.status} {'; '.join(ep.errors.values())[:80]}".strip(), "samples": ep.n_samples,
            "to_entities_mib": peaks.get("entities"), "stage_peaks_mib": peaks,
            "timings": {k: round(v, 1) for k, v in ep.timings.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="1,5,30")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--modes", default="stream,episode")
    ap.add_argument("--episode-max-minutes", type=float, default=5.0,
                    help="episode mode holds the whole video in memory: skip it above this length")
    ap.add_argument("--cut-every", type=float, default=0.0, help="seconds between cuts (0: none)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (YAML value)")
    ap.add_argument("--md", help="also write the table as markdown here")
    ap.add_argument("--work", default="/tmp/mu0-long-video", help="ingest modes: where the episode directories go")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import yaml

    sets = SETS | {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    if args.child:
        n, mode, cut = args.child.split(":")
        print(json.dumps(child(int(n), mode, sets, int(cut))))
        return
    rows = []
    for minutes in (float(m) for m in args.minutes.split(",")):
        n = int(round(minutes * 60 * args.fps))
        for mode in args.modes.split(","):
            if mode in ("episode", "ingest-held") and minutes > args.episode_max_minutes:
                continue
            cut = int(round(args.cut_every * args.fps))
            cmd = [sys.executable, "-m", "tests.bench.bench_long_video", "--child", f"{n}:{mode}:{cut}"]
            cmd += [a for kv in args.set for a in ("--set", kv)]
            env = dict(os.environ)
            if mode.startswith("ingest"):
                env["MU0_BENCH_EPISODE"] = str(episode_dir(n, args.fps, cut, Path(args.work)))
            res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            row = {"minutes": minutes, **json.loads(res.stdout.strip().splitlines()[-1])}
            row["tracker_mib"] = round(row["peak_mib"] - row["before_mib"] - row["outputs_mib"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    cols = ["minutes", "frames", "mode", "before_mib", "peak_mib", "outputs_mib", "tracker_mib", "tracks",
            "visible_at_end", "to_entities_mib", "status", "seconds"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    print("\n".join(md))
    if args.md:
        with open(args.md, "w") as fh:
            fh.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
