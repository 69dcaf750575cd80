"""Load benchmark: many short sim episodes in one `ingest` run; prints a table (and writes markdown with --md FILE).

    .venv/bin/python -m tests.bench.bench_load --sizes 100,500 --max-steps 20 --corpus /tmp/load-corpus --md /tmp/load.md

Renders the largest size's episodes once (tasks round-robin, static camera, episode i seeded i; in
`--render-jobs` processes, so the measuring process never holds a renderer), reusing the episodes a
`--corpus` directory already holds. Each size N then ingests the first N episodes, named in a manifest
(`<corpus>/manifest-N.txt`), into a fresh dataset with the real `ingest` flow on `--workers` Ray
workers (`sim` preset, `captions.backend=off` unless `--set` says otherwise).

Every size runs in its own child process, so the driver's peak RSS (`ru_maxrss`, which only ever
grows) belongs to that size alone. Recorded per size: wall time (the call until Prefect marks the run
Completed, as bench_ingest), frames/s, episodes ok/rejected/failed, rows per table, the driver's peak
RSS (`ru_maxrss`) and its RSS sampled every 0.5 s (before the flow, peak during it, when `extract`
returns with every result held), what the driver holds once `extract` returns (the EpisodeResult list:
count and pickled size, read by wrapping `RayRunner.extract` in the child; nothing is changed), the
peak RSS of every Ray worker process (children of the raylet: "ray::" in the title or
default_worker.py in the command line), of Ray's own processes and of the Prefect server, and the
Prefect task runs of the flow run (read back from the Prefect API: they must not grow with N).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from flows.environment import apply_defaults

apply_defaults({"PREFECT_LOGGING_LEVEL": "WARNING"})

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the table unwrapped

TASKS = ["reach", "push", "button-press", "drawer-open", "pick-place"]
SAMPLE_EVERY_S = 0.5
PHASES = ("discover", "extract", "commit", "index", "preview", "flow")  # "flow": Prefect around the steps
MiB = 1 << 20


# --------------------------------------------------------------------------- corpus


def episode_path(corpus: Path, i: int, tasks: list[str]) -> Path:
    """Where `tasks.sim.generate.run_episode` writes episode i (task round-robin, seed i)."""
    return corpus / f"{tasks[i % len(tasks)].removesuffix('-v3')}-{i:05d}"


def _render_one(corpus: str, task: str, seed: int, max_steps: int) -> str:
    import warnings

    warnings.filterwarnings("ignore")
    from tasks.sim.generate import run_episode

    return str(run_episode(Path(corpus), task, seed, "static", max_steps=max_steps))


def render_corpus(corpus: Path, n: int, tasks: list[str], max_steps: int, jobs: int) -> tuple[list[Path], int, float]:
    """The first `n` episodes of the corpus, rendering those missing: (paths in seed order, rendered, seconds).

    An episode counts as present once its meta.json exists (run_episode writes it last). A corpus
    rendered with other settings is refused rather than mixed.
    """
    corpus.mkdir(parents=True, exist_ok=True)
    settings = {"max_steps": max_steps, "camera": "static", "width": 320, "height": 240, "tasks": tasks}
    stamp = corpus / "corpus.json"
    if stamp.exists():
        had = json.loads(stamp.read_text())
        if had != settings:
            raise SystemExit(f"{corpus} was rendered with {had}, not {settings}: pass another --corpus")
    else:
        stamp.write_text(json.dumps(settings, indent=2))
    paths = [episode_path(corpus, i, tasks) for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not (p / "meta.json").exists()]
    t0 = time.perf_counter()
    if missing:
        import multiprocessing as mp

        with (
            ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool,
            console.status(f"rendering {len(missing)} episodes ({len(paths) - len(missing)} cached) in {jobs} processes") as st,
        ):
            futures = [pool.submit(_render_one, str(corpus), tasks[i % len(tasks)], i, max_steps) for i in missing]
            for done, fut in enumerate(as_completed(futures), start=1):
                fut.result()
                st.update(f"rendering: {done}/{len(missing)} episodes ({time.perf_counter() - t0:.0f} s)")
    return paths, len(missing), time.perf_counter() - t0


def write_manifest(corpus: Path, paths: list[Path]) -> Path:
    manifest = corpus / f"manifest-{len(paths)}.txt"
    manifest.write_text("".join(f"{p.resolve()}\n" for p in paths))
    return manifest


# --------------------------------------------------------------------------- one measured run (child process)


class Sampler:
    """Peak RSS of this process and of its descendants (Ray workers, Ray's own processes, the Prefect server)."""

    def __init__(self, every: float = SAMPLE_EVERY_S):
        import threading

        import psutil

        self.every, self.me = every, psutil.Process()
        self.driver_peak = 0
        self.phase = "flow"  # which step of the flow the driver is in (set by `measure`'s wrappers)
        self.phase_peaks: dict[str, int] = {}  # phase -> the driver's peak RSS sampled in it
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (kind, peak RSS)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    @staticmethod
    def kind(proc) -> str:
        """worker: a Ray worker process (a child of the raylet: "ray::IDLE", "ray::_process_on_worker", or
        default_worker.py before it sets its title); ray: Ray's own processes (raylet, GCS, agents, monitors)."""
        try:
            name, cmd = proc.name(), " ".join(proc.cmdline())
            parent = proc.parent()
            parent_name = parent.name() if parent else ""
        except Exception:  # noqa: BLE001 - gone between listing and reading
            return "gone"
        if name in ("raylet", "gcs_server"):
            return "ray"
        if parent_name == "raylet" and ("default_worker.py" in cmd or name.startswith("ray::")) and not name.endswith("Agent"):
            return "worker"
        if name.startswith("ray::") or "/ray/" in cmd:
            return "ray"
        if "prefect" in cmd or "uvicorn" in cmd:
            return "prefect"
        return "other"

    def sample(self) -> None:
        rss = self.me.memory_info().rss
        self.driver_peak = max(self.driver_peak, rss)
        self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), rss)
        for proc in self.me.children(recursive=True):
            try:
                rss = proc.memory_info().rss
            except Exception:  # noqa: BLE001
                continue
            kind, peak = self.peaks.get(proc.pid, ("", 0))
            if kind in ("", "gone", "other"):  # a Ray worker may not have its "ray::" title yet
                kind = self.kind(proc)
            self.peaks[proc.pid] = (kind, max(peak, rss))
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _prefect_run(flow_run_id) -> tuple[float, list[str]]:
    """(end time of the flow run as a Unix timestamp, names of its task runs), read back from the API.

    Task runs reach the API as events: read until the count is the same twice, one second apart.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            end = (await client.read_flow_run(flow_run_id)).end_time
            names: list[str] = []
            for _ in range(20):
                runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
                now = sorted(r.name.rsplit("-", 1)[0] for r in runs)  # "extract-3f2" -> "extract"
                if now and now == names:
                    break
                names = now
                await asyncio.sleep(1.0)
            return end.timestamp(), names

    return asyncio.run(read())


def measure(manifest: Path, workers: int, overrides: list[str]) -> dict:
    """One `ingest` flow run over `manifest` into a fresh dataset; every number the table shows."""
    import pickle
    import resource

    import psutil
    import ray
    from prefect import flow

    from flows.ingest import ingest
    from storage.query import counts
    from tasks.config import get_preset, parse_assignments, with_overrides
    from tasks.run.ray_runner import RayRunner

    cfg = with_overrides(get_preset("sim"), {"captions.backend": "off", **parse_assignments(overrides)})
    me = psutil.Process()
    flow(name="warm-up")(lambda: None)()  # the ephemeral Prefect server starts here, not inside the run
    ray.shutdown()
    RayRunner(num_cpus=workers).start(cfg)  # Ray up, every worker slot warm: not timed (as bench_ingest)

    # Read-only looks at what the driver does, behaviour unchanged: each step the flow's tasks call is
    # wrapped to name the phase the sampler is in ("flow": Prefect between and around them), and
    # `extract` to weigh the results the driver holds from then on.
    import flows.ingest as flow_module
    import tasks.view.overlay as overlay

    sampler = Sampler()
    held: dict[str, int] = {}

    def phase(name: str, fn, weigh: bool = False):
        def wrapped(*a, **kw):
            sampler.sample()
            sampler.phase = name
            try:
                out = fn(*a, **kw)
            finally:
                sampler.sample()
                sampler.phase = "flow"
            if weigh:
                held["rss_after_extract"] = me.memory_info().rss
                held["results"] = len(out)
                held["results_pickled"] = len(pickle.dumps(out))
                held["fragment_json"] = sum(len(s) for r in out for frags in r.fragments.values() for s in frags)
            return out

        return wrapped

    patched = [(RayRunner, "extract", "extract"), (flow_module, "find_new", "discover"),
               (flow_module, "commit_results", "commit"), (flow_module, "ensure_indexes", "index"),
               (overlay, "overlay_png", "preview")]
    originals = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patched]
    for obj, attr, name in patched:
        setattr(obj, attr, phase(name, getattr(obj, attr), weigh=name == "extract"))
    root = Path(tempfile.mkdtemp(prefix="mu0-load-"))
    dataset = str(root / "traces")
    sampler.sample()
    rss_before = me.memory_info().rss
    sampler.start()
    t0 = time.time()
    try:
        state = ingest(str(manifest), dataset, cfg, return_state=True)
        returned = time.time() - t0
    finally:
        sampler.stop()
        for obj, attr, fn in originals:
            setattr(obj, attr, fn)
    report = state.result()
    end, task_runs = _prefect_run(state.state_details.flow_run_id)
    rows = counts(dataset)
    disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    ray.shutdown()
    shutil.rmtree(root, ignore_errors=True)
    kinds: dict[str, dict[int, int]] = {}
    for pid, (kind, peak) in sampler.peaks.items():
        kinds.setdefault(kind, {})[pid] = peak
    return {
        "episodes": report.discovered,
        "ok": report.ok, "rejected": report.rejected, "failed": report.failed,
        "failures": [f"{f.status} {f.source_uri}: {f.error}" for f in report.failures],
        "frames": report.frames, "tracks": report.tracks, "samples": report.samples,
        "wall_completed": end - t0, "wall_returned": returned, "report_seconds": report.seconds,
        "stage_seconds": report.stage_seconds,
        "rows": rows, "disk": disk,
        "task_runs": task_runs,
        "driver_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KB on Linux
        "driver_rss_before": rss_before,
        "driver_peak_sampled": sampler.driver_peak,
        "driver_phase_peaks": sampler.phase_peaks,
        **held,
        "workers": kinds.get("worker", {}),
        "ray_system": kinds.get("ray", {}),
        "prefect": kinds.get("prefect", {}),
        "other": kinds.get("other", {}),
        "samples_taken": sampler.samples,
    }


# --------------------------------------------------------------------------- table


def mib(b: float) -> str:
    return f"{b / MiB:.0f}"


def table_rows(runs: list[dict]) -> list[tuple[str, ...]]:
    def row(name: str, f) -> tuple[str, ...]:
        return (name, *(f(r) for r in runs))

    order = ("episodes", "frames", "tracks", "samples", "captions")  # storage.schema.TABLES
    names = sorted({t for r in runs for t in r["rows"]}, key=lambda t: (order.index(t) if t in order else len(order), t))
    out = [
        row("episodes ok / rejected / failed", lambda r: f"{r['ok']} / {r['rejected']} / {r['failed']}"),
        row("frames", lambda r: str(r["frames"])),
        row("wall time, s (call -> run Completed)", lambda r: f"{r['wall_completed']:.1f}"),
        row("frames/s (wall)", lambda r: f"{r['frames'] / r['wall_completed']:.1f}"),
        row("s per episode (wall)", lambda r: f"{r['wall_completed'] / max(1, r['episodes']):.3f}"),
        row("extract + commit + index, s (report)", lambda r: f"{r['report_seconds']:.1f}"),
    ]
    out += [row(f"rows: {t}", lambda r, t=t: str(r["rows"].get(t, 0))) for t in names]
    out += [
        row("dataset on disk, MiB", lambda r: mib(r["disk"])),
        row("Prefect task runs", lambda r: f"{len(r['task_runs'])} ({', '.join(r['task_runs'])})"),
        row("driver peak RSS (ru_maxrss), MiB", lambda r: mib(r["driver_maxrss"])),
        row("driver RSS before the flow, MiB", lambda r: mib(r["driver_rss_before"])),
        row("driver peak RSS during the flow (sampled), MiB", lambda r: mib(r["driver_peak_sampled"])),
        row("driver RSS when extract returns, MiB", lambda r: mib(r.get("rss_after_extract", 0))),
        row("driver peak RSS per phase (sampled), MiB", lambda r: ", ".join(
            f"{k} {mib(v)}" for k, v in sorted(r["driver_phase_peaks"].items(), key=lambda kv: PHASES.index(kv[0])))),
        row("driver growth during the flow, MiB", lambda r: mib(r["driver_peak_sampled"] - r["driver_rss_before"])),
        row("results held after extract: n / pickled KiB", lambda r: f"{r.get('results', 0)} / {r.get('results_pickled', 0) / 1024:.0f}"),
        row("  of which fragment JSON, KiB", lambda r: f"{r.get('fragment_json', 0) / 1024:.0f}"),
        row("Ray worker processes seen", lambda r: str(len(r["workers"]))),
        row("Ray worker peak RSS, max over workers, MiB", lambda r: mib(max(r["workers"].values(), default=0))),
        row("Ray worker peak RSS per pid, MiB", lambda r: ", ".join(f"{p}: {mib(v)}" for p, v in sorted(r["workers"].items()))),
        row("Ray raylet/GCS/etc. peak RSS, sum, MiB", lambda r: mib(sum(r["ray_system"].values()))),
        row("Prefect server peak RSS, MiB", lambda r: mib(sum(r["prefect"].values()))),
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=500, help="episodes of one run (when --sizes is not given)")
    ap.add_argument("--sizes", help="comma-separated episode counts, one run (and dataset) each, e.g. 100,500")
    ap.add_argument("--max-steps", type=int, default=20, help="frames per episode at most")
    ap.add_argument("--corpus", type=Path, help="render into / reuse this directory (else a temporary one)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="Meta-World tasks, round-robin")
    ap.add_argument("--workers", type=int, default=2, help="Ray worker slots (num_cpus)")
    ap.add_argument("--render-jobs", type=int, default=os.cpu_count() or 1, help="processes rendering the corpus")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the sim preset (captions.backend=off is already set)")
    ap.add_argument("--md", type=Path, help="also write the table as markdown here")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child: one run over this manifest
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # child: where its numbers go
    args = ap.parse_args()

    if args.measure:
        args.json.write_text(json.dumps(measure(args.measure, args.workers, args.set)))
        return

    t_all = time.perf_counter()
    sizes = sorted({int(s) for s in args.sizes.split(",")}) if args.sizes else [args.episodes]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix="mu0-load-corpus-"))
    paths, rendered, render_s = render_corpus(corpus, max(sizes), tasks, args.max_steps, args.render_jobs)
    console.print(f"corpus {corpus}: {len(paths)} episodes, {rendered} rendered now in {render_s:.0f} s")

    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="mu0-load-prefect-"))  # a fresh API database
    runs = []
    for n in sizes:
        manifest = write_manifest(corpus, paths[:n])
        out = Path(tempfile.mkstemp(prefix=f"mu0-load-{n}-", suffix=".json")[1])
        cmd = [sys.executable, "-m", "tests.bench.bench_load", "--measure", str(manifest), "--json", str(out),
               "--workers", str(args.workers), *(f"--set={s}" for s in args.set)]
        with console.status(f"ingesting {n} episodes with {args.workers} Ray workers"):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True)
        runs.append(json.loads(out.read_text()))
        out.unlink()
        r = runs[-1]
        console.print(f"{n} episodes: {r['wall_completed']:.1f} s, {r['ok']} ok / {r['rejected']} rejected / "
                      f"{r['failed']} failed (child process {time.perf_counter() - t0:.0f} s)")
        for f in r["failures"][:10]:
            console.print(f"  [yellow]{f[:300]}")

    rows = table_rows(runs)
    frames = ", ".join(str(r["frames"]) for r in runs)
    note = f", {' '.join(args.set)}" if args.set else ""
    title = (f"ingest under load: sizes {', '.join(map(str, sizes))} episodes (<= {args.max_steps} frames, {frames} frames), "
             f"{args.workers} Ray workers, {os.cpu_count()} cores, sim preset, captions.backend=off{note}")
    t = Table(title=title)
    t.add_column("measure")
    for n in sizes:
        t.add_column(f"{n} episodes", justify="right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    total = time.perf_counter() - t_all
    console.print(f"whole benchmark: {total:.0f} s (rendering {render_s:.0f} s, {rendered} episodes rendered)")
    if args.md:
        head = "| measure | " + " | ".join(f"{n} episodes" for n in sizes) + " |\n"
        sep = "|---|" + "---:|" * len(sizes) + "\n"
        body = "\n".join("| " + " | ".join(r) + " |" for r in rows)
        args.md.write_text(f"{title}\n\n{head}{sep}{body}\n\nwhole benchmark: {total:.0f} s "
                           f"(rendering {render_s:.0f} s, {rendered} episodes rendered)\n")


if __name__ == "__main__":
    main()
