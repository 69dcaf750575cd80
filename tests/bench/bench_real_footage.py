"""Real footage (issue 18): the eight shared real clips through `ingest`, and a 2D forward-backward figure per clip.

    .venv/bin/python -m tests.bench.bench_real_footage --work DIR [--clips ../shared/videos/real]
        [--stages ingest,fb,cotracker] [--cotracker-frames 8 --cotracker-queries 50]

`ingest`: every clip as a plain video with the `generic` preset, `--depth depth-anything --pose open3d`, the
depth model a tiny random Depth Anything saved under DIR (no metric weights exist offline, so depth-dependent
steps may reject an episode; what matters is that none fails with a traceback or a wrong cause). Per clip:
source size and rate, frames kept, status, the first line of the cause, tracks. The dataset is DIR/ds.

`fb` (classical tracker): frame 0's textured keypoints (`propose`, as the keypoints stage seeds them) are
tracked forward to the last kept frame with `track.track_queries`, the survivors back from there to frame 0;
the figure is the distance to where each started, over the tracks that survive both ways. The geometry is
neutral (a plane 1 m away, a static camera, the 60 degree prior K) because the random depth would decide
everything. Two settings: the LK core (depth gate, rigidity and re-acquisition off: the 2D tracker alone),
and the preset's own, whose 3D gates then act as pixel gates (2 cm -> 0.02 f px) and whose re-acquisition
by depth agreement + NCC has no real depth to go by (its round-trip errors say what that costs).

`cotracker`: the CoTracker3 backend's own windowed predictor (`cotracker_track._one_way`) forward over the
first `--cotracker-frames` kept frames and back, `--cotracker-queries` queries, RANDOM weights (none exist
offline): survival is CoTracker's own visibility, the error is over all queries. A harness check that the
backend runs on real frames of every size, not an accuracy figure. Tables go to stdout and DIR/real_footage.md.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from flows.environment import apply_defaults

apply_defaults()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from tasks.config import TrackConfig, get_preset, with_overrides  # noqa: E402
from tasks.extract.intrinsics import intrinsics_from_hfov  # noqa: E402
from tasks.extract.keypoints import propose  # noqa: E402
from tasks.extract.video import probe_video  # noqa: E402
from tasks.run.episode import run_stages, stages_until  # noqa: E402
from tasks.types import EpisodeSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLIPS = ROOT.parent / "shared" / "videos" / "real"
VENDOR = ROOT.parent / "shared" / "vendor" / "co-tracker"
PLANE_M = 1.0
CRASH = re.compile(r": \w+: .*\(at [\w.]+\.py:\d+\)$")  # how run_stages writes a stage's exception
STAGES = ("ingest", "fb", "fb-preset", "cotracker")  # sections of DIR/real_footage.md, in this order


def clips(folder: Path) -> list[Path]:
    found = sorted(folder.glob("*.mp4"))
    if not found:
        raise SystemExit(f"no .mp4 clips in {folder}")
    return found


def config(depth_model: str):
    """The generic preset as `mu0 ingest CLIP --depth depth-anything --depth-model DIR --pose open3d` sets it."""
    return with_overrides(get_preset("generic"), {
        "depth.backend": "depth-anything", "depth.model": depth_model, "pose.backend": "open3d",
    })


def first_line(errors: dict[str, str]) -> str:
    causes = {k: v for k, v in errors.items() if k != "decode_note"}
    if not causes:
        return ""
    stage, text = next(iter(causes.items()))
    return f"{stage}: {text.splitlines()[0]}"


def stage_ingest(work: Path, folder: Path) -> list[str]:
    from models.depth_anything import save_random_depth_anything
    from tasks.run.ingest import ingest

    model = work / "depth-anything-tiny"
    if not (model / "config.json").is_file():
        save_random_depth_anything(model)
    results = {}
    t0 = time.perf_counter()
    report = ingest(str(folder), str(work / "ds"), config(str(model)),
                    on_result=lambda r: results.update({r.source_uri: r}))
    seconds = time.perf_counter() - t0
    rows = ["| clip | source | fps | frames kept | status | cause (first line) | tracks | stage seconds |",
            "|---|---|---|---|---|---|---|---|"]
    for path in clips(folder):
        info, r = probe_video(path), results.get(str(path))
        if r is None:
            rows.append(f"| {path.stem} | {info.width}x{info.height} | {info.fps:.1f} | - | already in {work / 'ds'} |||")
            continue
        cause = first_line(r.errors).replace("|", "/")
        status = r.status + (" (TRACEBACK)" if any(CRASH.search(v) for v in r.errors.values()) else "")
        rows.append(
            f"| {path.stem} | {info.width}x{info.height} | {info.fps:.1f} | {r.n_frames} | {status} | {cause} | "
            f"{r.n_tracks} | {sum(r.timings.values()):.1f} |"
        )
    rows.append(f"\n{report.ok} ok, {report.rejected} rejected, {report.failed} failed in {seconds:.0f} s "
                f"(dataset {work / 'ds'})")
    return rows


def neutral(ep):
    """Grey frames, a constant-depth plane, static identity cameras and the prior K for a decoded episode."""
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in ep.frames])
    T, H, W = gray.shape
    depth = np.full((T, H, W), PLANE_M, np.float32)
    return gray, depth, intrinsics_from_hfov(W, H, 60.0), np.tile(np.eye(4), (T, 1, 1))


def queries(gray0, limit: int | None = None) -> np.ndarray:
    cfg = get_preset("generic")
    uv, flat = propose(gray0, cfg.keypoints, cfg.track.window_px)
    uv = uv[~flat]  # flat points are followed only as static world points: no 2D motion to check
    if limit is not None and len(uv) > limit:
        uv = uv[np.sort(np.random.default_rng(0).choice(len(uv), limit, replace=False))]
    return uv


def fb_figure(uv0, fwd_uv, fwd_vis, back) -> dict:
    """Survival both ways and frame-0 error of the round trip; `back(uv_last)` -> (uv (m,T,2), vis (m,T))."""
    n, T = fwd_vis.shape
    alive = np.flatnonzero(fwd_vis[:, T - 1])
    err = np.zeros(0)
    if len(alive):
        buv, bvis = back(fwd_uv[alive, T - 1])
        home = bvis[:, 0]
        err = np.linalg.norm(buv[home, 0] - uv0[alive[home]], axis=1)
    return {"n": n, "fwd": len(alive) / max(n, 1), "both": len(err) / max(n, 1), "err": err}


def decoded(path: Path):
    cfg = with_overrides(get_preset("generic"), {"depth.backend": "depth-anything"})  # plain video: depth is predicted
    ep = run_stages(EpisodeSource(uri=str(path), episode_id=path.stem, kind="video"), cfg, stages_until("decode"))
    if ep.status != "ok":
        raise RuntimeError(f"{path.name}: {ep.errors}")
    return ep


def lk_core() -> TrackConfig:
    """The preset's tracker with its geometric gates and recoveries off: forward-backward-checked pyramidal LK."""
    return get_preset("generic").track.model_copy(update={
        "depth_jump_m": 1e3, "rigid_tol_m": 0.0, "max_gap_frames": 0, "reacquire_depth_m": 1e-9, "reacquire_ncc": 1.0,
    })


def classical(path: Path, cfg: TrackConfig) -> dict:
    from tasks.extract.track import track_queries

    ep = decoded(path)
    gray, depth, K, w2c = neutral(ep)
    uv0 = queries(gray[0])
    T = len(gray)
    t0 = time.perf_counter()
    fu, fv = track_queries(gray, depth, K, w2c, 0, uv0, cfg)
    out = fb_figure(uv0, fu, fv, lambda last: track_queries(gray, depth, K, w2c, T - 1, last, cfg))
    return {**out, "T": T, "W": gray.shape[2], "H": gray.shape[1], "s": time.perf_counter() - t0}


def cotracker(path: Path, frames: int, n_queries: int) -> dict:
    """Forward over the first `frames` kept frames and back, with the backend's own windowed predictor.

    Random weights almost never call a point visible, so survival is CoTracker's own visibility at the far
    end both ways, and the round-trip error is over every query, visibility ignored (the harness check).
    """
    import torch

    from models.cotracker import load_cotracker
    from tasks.extract.cotracker_track import _one_way

    ep = decoded(path)
    video = torch.from_numpy(ep.frames[:frames]).permute(0, 3, 1, 2)
    T, _, H, W = video.shape
    cfg = TrackConfig(backend="cotracker", cotracker_repo=str(VENDOR), weights="random", device="cpu")
    model = load_cotracker(str(VENDOR), cfg.cotracker_model, "random", "cpu")
    uv0 = queries(cv2.cvtColor(ep.frames[0], cv2.COLOR_RGB2GRAY), n_queries)
    q0 = np.zeros(len(uv0), np.int64)
    t0 = time.perf_counter()
    fu, fv = _one_way(model, video, q0, uv0, cfg)
    bu, bv = _one_way(model, video.flip(0), q0, fu[:, -1], cfg)
    err = np.linalg.norm(bu[:, -1] - uv0, axis=1)
    if not np.isfinite(err).all():
        raise RuntimeError(f"{path.name}: CoTracker returned non-finite positions")
    both = fv[:, -1] & bv[:, -1]
    return {"n": len(uv0), "fwd": fv[:, -1].mean(), "both": both.mean(), "n_both": int(both.sum()), "err": err,
            "T": T, "W": W, "H": H, "s": time.perf_counter() - t0}


def fb_rows(name: str, figures: dict[str, dict]) -> list[str]:
    rows = [
        f"| clip ({name}) | size | frames | queries | survive fwd | survive both | median px | p90 px | "
        "median % diag | p90 % diag | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for clip, f in figures.items():
        diag = float(np.hypot(f["W"], f["H"]))
        e = f["err"]
        med, p90 = (np.median(e), np.percentile(e, 90)) if len(e) else (np.nan, np.nan)
        rows.append(
            f"| {clip} | {f['W']}x{f['H']} | {f['T']} | {f['n']} | {f['fwd']:.0%} | "
            f"{f['both']:.0%} ({f.get('n_both', len(e))}) | {med:.2f} | "
            f"{p90:.2f} | {100 * med / diag:.2f} | {100 * p90 / diag:.2f} | {f['s']:.0f} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--clips", type=Path, default=CLIPS)
    ap.add_argument("--stages", default="ingest,fb,cotracker")
    ap.add_argument("--cotracker-frames", type=int, default=8)
    ap.add_argument("--cotracker-queries", type=int, default=50)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")

    def emit(stage: str, title: str, rows: list[str]) -> None:
        """Print a table and keep it as DIR/real_footage.STAGE.md; DIR/real_footage.md joins the stages run so far."""
        block = "\n".join([f"### {title}\n", *rows]) + "\n"
        print("\n" + block, flush=True)
        (args.work / f"real_footage.{stage}.md").write_text(block)
        parts = [args.work / f"real_footage.{s}.md" for s in STAGES]
        (args.work / "real_footage.md").write_text("\n".join(p.read_text() for p in parts if p.is_file()))

    if "ingest" in stages:
        emit("ingest", "ingest (generic preset, tiny random Depth Anything, open3d poses)",
             stage_ingest(args.work, args.clips))
    if "fb" in stages:
        emit("fb", "2D forward-backward, classical tracker, LK core (depth, rigidity and re-acquisition off; all kept "
             "frames, frame 0's textured keypoints)",
             fb_rows("LK core", {p.stem: classical(p, lk_core()) for p in clips(args.clips)}))
        emit("fb-preset", "2D forward-backward, classical tracker as the preset sets it, on a neutral plane (its depth "
             "gates and re-acquisition see no real depth here)",
             fb_rows("LK preset", {p.stem: classical(p, get_preset("generic").track) for p in clips(args.clips)}))
    if "cotracker" in stages:
        emit("cotracker", f"2D forward-backward, CoTracker3 with RANDOM weights (first {args.cotracker_frames} kept "
             f"frames, {args.cotracker_queries} queries; survival is its own visibility, the error is over all queries): "
             "a harness check, not an accuracy figure",
             fb_rows("CoTracker3 random", {p.stem: cotracker(p, args.cotracker_frames, args.cotracker_queries)
                                           for p in clips(args.clips)}))
    print(f"written {args.work / 'real_footage.md'}")


if __name__ == "__main__":
    main()
