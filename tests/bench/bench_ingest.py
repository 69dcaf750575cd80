"""Ingestion throughput benchmark: prints a table (and writes markdown with --md FILE).

    .venv/bin/python -m tests.bench.bench_ingest --episodes 12 --max-steps 120 [--set captions.backend=off] [--repeat 3]

Measures, on one simulated corpus: PyAV decode-only frames/s; each stage alone (in-process,
one thread); the whole `ingest` flow (Prefect + Ray + Lance writes + commit + index) with 1 and
2 Ray workers. The Prefect API is warmed up first so its one-off start is not counted.

A flow is timed from the call until Prefect marks the run Completed (the run's `end_time`, what
the UI shows): the call itself returns up to 1 s later, because Prefect 3.8.8 joins the flow's
heartbeat thread, which sleeps in whole seconds, so every call's wall time is rounded up to
whole seconds (`_send_heartbeats` in prefect/flow_engine.py). Both are printed. `--repeat N`
runs everything N times (the machine's own noise is a few percent) and prints each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from flows.environment import apply_defaults

apply_defaults({"PREFECT_LOGGING_LEVEL": "WARNING", "MU0_DECODE_THREADS": "1"})  # stages alone: one core, like a Ray worker

import av  # noqa: E402
import cv2  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tasks.config import IngestConfig, get_preset, parse_assignments, with_overrides  # noqa: E402
from tasks.run.discover import discover  # noqa: E402
from tasks.run.episode import run_stages  # noqa: E402

console = Console()


def decode_only_fps(paths: list[Path]) -> float:
    n, t0 = 0, time.perf_counter()
    for p in paths:
        with av.open(str(p / "video.mp4")) as c:
            for f in c.decode(video=0):
                f.to_ndarray(format="rgb24")
                n += 1
    return n / (time.perf_counter() - t0)


def stage_fps(corpus: Path, cfg: IngestConfig) -> tuple[dict[str, float], int]:
    cv2.setNumThreads(1)
    totals: dict[str, float] = {}
    frames = 0
    for src in discover(str(corpus), cfg):
        ep = run_stages(src, cfg)
        frames += ep.n_frames
        for k, v in ep.timings.items():
            totals[k] = totals.get(k, 0.0) + v
    return {k: frames / v for k, v in totals.items() if v > 0}, frames


def flow_fps(corpus: Path, workers: int, cfg: IngestConfig) -> tuple[float, float]:
    """Frames/s of the `ingest` flow: (until the run is Completed, until the call returns)."""
    import asyncio

    import ray
    from prefect.client.orchestration import get_client

    from flows.ingest import ingest
    from tasks.run.ray_runner import RayRunner

    ray.shutdown()
    RayRunner(num_cpus=workers).start(cfg)  # starting the workers and loading their models: not timed
    root = Path(tempfile.mkdtemp(prefix="mu0-bench-"))
    t0 = time.time()
    state = ingest(str(corpus), str(root / "traces"), cfg, return_state=True)
    returned = time.time() - t0
    report = state.result()

    async def end_time():
        async with get_client() as client:
            return (await client.read_flow_run(state.state_details.flow_run_id)).end_time

    completed = asyncio.run(end_time()).timestamp() - t0
    shutil.rmtree(root, ignore_errors=True)
    ray.shutdown()
    return report.frames / completed, report.frames / returned


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, help="existing sim corpus (else one is generated)")
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--max-steps", type=int, default=120)
    ap.add_argument("--md", type=Path, help="also write the table as markdown here")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the sim preset, e.g. captions.backend=off")
    ap.add_argument("--repeat", type=int, default=1, help="run every measure this many times")
    args = ap.parse_args()
    cfg = with_overrides(get_preset("sim"), parse_assignments(args.set))  # as `mu0 ingest --set`

    corpus = args.corpus
    if corpus is None:
        from tasks.sim.generate import generate_corpus

        corpus = Path(tempfile.mkdtemp(prefix="mu0-bench-corpus-"))
        with console.status(f"rendering {args.episodes} episodes"):
            generate_corpus(corpus, args.episodes, ["pick-place", "drawer-open", "button-press", "push", "reach"],
                            max_steps=args.max_steps)
    paths = sorted(p for p in corpus.iterdir() if p.is_dir())

    from prefect import flow

    with console.status("warming up the Prefect API"):
        flow(name="warm-up")(lambda: None)()
    runs, frames = zip(*(one_run(corpus, paths, cfg) for _ in range(args.repeat)))
    rows = [(name, *(r[name] for r in runs)) for name in runs[0]]
    note = f", {' '.join(args.set)}" if args.set else ""
    t = Table(title=f"ingest throughput, frames/s ({len(paths)} episodes, {frames[0]} frames, {os.cpu_count()} cores{note})")
    t.add_column("measure")
    for i in range(len(runs)):
        t.add_column(f"run {i + 1}", justify="right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    if args.md:
        head = "| measure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |\n"
        sep = "|---|" + "---|" * len(runs) + "\n"
        args.md.write_text(head + sep + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")


def one_run(corpus: Path, paths: list[Path], cfg: IngestConfig) -> tuple[dict[str, str], int]:
    """Every measure once (decode only, each stage alone, the flow with 1 and 2 workers), and the frame count."""
    out = {"PyAV decode only": f"{decode_only_fps(paths):.0f}"}
    per_stage, frames = stage_fps(corpus, cfg)
    for k, v in per_stage.items():
        if k != "total":
            out[f"stage alone: {k}"] = f"{v:.0f}"
    slow_name, slow = min(((k, v) for k, v in per_stage.items() if k != "total"), key=lambda kv: kv[1])
    one, one_returned = flow_fps(corpus, 1, cfg)
    two, two_returned = flow_fps(corpus, 2, cfg)
    out |= {
        "ingest flow, 1 Ray worker": f"{one:.0f}",
        "ingest flow, 2 Ray workers": f"{two:.0f}",
        "2 workers / 1 worker": f"{two / one:.2f}x",
        f"1 worker / slowest stage alone ({slow_name})": f"{one / slow:.0%}",
        "until the call returns: 1 / 2 workers": f"{one_returned:.0f} / {two_returned:.0f}",
    }
    return out, frames


if __name__ == "__main__":
    main()
