"""The `ingest` flow: discover -> extract on Ray -> one atomic commit (storage.writer.commit_run) -> indexes -> report.

Tasks are coarse and pass URIs, ids and fragment metadata, never arrays; per-episode fan-out is
Ray's job inside `extract`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.orphans import crash_orphaned_runs
from storage.runs import run_lease
from storage.writer import ensure_indexes
from tasks.config import PRESETS, IngestConfig
from tasks.run.episode import EpisodeResult, episode_resources
from tasks.run.ingest import Runner, commit_results, find_new, summarize
from tasks.run.ray_runner import RayRunner
from tasks.run.report import IngestReport
from tasks.run.sequential import SequentialRunner
from tasks.types import EpisodeSource


PROGRESS_INTERVAL_S = 1.0  # least time between two updates of the progress artifact
GPU_LIMIT = "gpu"  # global concurrency limit: each GPU-heavy run holds one slot (`mu0 serve --gpus N`)


def gpu_guard(config: IngestConfig):
    """Hold a slot of the global GPU limit while extracting with GPU backends (a no-op on CPU)."""
    return concurrency(GPU_LIMIT, occupy=1) if episode_resources(config).gpus > 0 else contextlib.nullcontext()


def make_runner(runner: str, ray_address: str | None, num_cpus: int | None, retries: int) -> Runner:
    return SequentialRunner() if runner == "sequential" else RayRunner(ray_address, num_cpus, retries=retries)


# What to try for each kind of refusal, keyed on words the refusing stage writes (first match wins).
NEXT_STEPS: list[tuple[str, str, str]] = [
    ("camera tracking lost", "camera lost",
     "give the cameras (--pose given) or depth (--depth given), or keep more frames (--set decode.target_fps=...) "
     "so the camera moves less between them"),
    ("decode.target_fps=", "too few frames",
     "keep more frames: use the --set decode.target_fps=... (or decode.max_frames=...) its message names"),
    ("little texture", "textureless video",
     "give depth and cameras (--depth given --pose given: flat surfaces are then carried as static points) or keep "
     "the full resolution (--set decode.max_width=null); lowering filter.min_track_coverage would keep untracked video"),
    ("no trackable points", "textureless video",
     "give depth and cameras (--depth given --pose given) or keep the full resolution (--set decode.max_width=null)"),
    ("depth disagrees with the image motion", "depth inconsistent",
     "use a metric depth checkpoint that fits the scene (--depth-model ...-Indoor- or -Outdoor-) or give depth "
     "(--depth given); --set track.depth_jump_m=0.05 loosens the tracker's 3D check"),
    ("tracks were lost", "tracks lost",
     "keep more frames (--set decode.target_fps=... higher, or null for every frame) so points move less between "
     "them; --set keypoints.reseed_every=5 re-seeds emptied cells sooner"),
    ("no usable depth", "no depth",
     "check the depth: --depth given where the source has it, or --set lift.max_depth_m=... for far scenes"),
]


def next_steps(errors: list[str]) -> list[str]:
    """One line per kind of refusal among `errors`: how many, and what to try ("" kinds not recognised are left out)."""
    counts: dict[str, int] = {}
    advice: dict[str, str] = {}
    for error in errors:
        for key, kind, tip in NEXT_STEPS:
            if key in error:
                counts[kind] = counts.get(kind, 0) + 1
                advice[kind] = tip
                break
    return [f"{kind} ({n}): {advice[kind]}" for kind, n in counts.items()]


@task(name="discover", cache_policy=NO_CACHE)
def discover_new(source: str, dataset: str, config: IngestConfig) -> tuple[list[EpisodeSource], int]:
    """Episodes in `source` that the dataset does not hold yet, and how many were found (tasks.run.ingest.find_new)."""
    return find_new(source, dataset, config)


@task(name="extract", cache_policy=NO_CACHE)
def extract(
    todo: list[EpisodeSource], dataset: str, config: IngestConfig, runner: Runner, show_progress: bool
) -> tuple[list[EpisodeResult], float]:
    """Run the stages for every episode: (results, seconds of work once the workers are up).

    Progress goes to the terminal and to a Prefect progress artifact.
    """
    runner.start(config)  # Ray start-up and model loading: set-up, not timed
    with gpu_guard(config):  # waiting for a GPU slot: not timed either
        t0 = time.perf_counter()
        artifact = create_progress_artifact(progress=0.0, description=f"episodes extracted into {dataset}")
        with Progress(
            TextColumn("[bold]extract"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            disable=not show_progress,
        ) as bar:
            on_result = _progress(bar, bar.add_task("extract", total=len(todo), note=""), artifact, len(todo))
            results = runner.extract(todo, config, dataset, on_result)
        return results, time.perf_counter() - t0


def _progress(bar: Progress, task_id, artifact, total: int):
    done = {"n": 0, "failed": 0, "reported": time.perf_counter()}

    def on_result(res: EpisodeResult) -> None:
        done["n"] += 1
        done["failed"] += res.status == "failed"
        bar.update(task_id, advance=1, note=f"{done['failed']} failed" if done["failed"] else "")
        # One API call per episode competes with the workers for the driver's CPU: report at most
        # every PROGRESS_INTERVAL_S, and always the final 100%.
        now = time.perf_counter()
        if done["n"] == total or now - done["reported"] >= PROGRESS_INTERVAL_S:
            done["reported"] = now
            update_progress_artifact(artifact_id=artifact, progress=100.0 * done["n"] / max(1, total))

    return on_result


@task(name="commit", cache_policy=NO_CACHE)
def commit_all(dataset: str, results: list[EpisodeResult], config: IngestConfig, tag: str) -> dict[str, int]:
    """The run's fragments committed, tagged so the run can be time-travelled to (tasks.run.ingest.commit_results)."""
    return commit_results(dataset, results, config, tag)


@task(name="index", cache_policy=NO_CACHE)
def index(dataset: str) -> None:
    ensure_indexes(dataset)


@task(name="preview", cache_policy=NO_CACHE)
def preview(dataset: str, results: list[EpisodeResult]) -> str | None:
    """One overlay frame (future traces over the image) of the first ok episode as a markdown artifact.

    A look at the data, not part of it: any error is logged and the run goes on.
    """
    ok = next((r for r in results if r.status == "ok" and r.n_samples > 0), None)
    if ok is None:
        return None
    try:
        import base64

        from tasks.view.overlay import overlay_png

        png = base64.b64encode(overlay_png(dataset, ok.episode_id)).decode()
        markdown = (
            f"**{ok.source_uri}** (episode `{ok.episode_id[:12]}`): future traces over the frame with the most keypoints"
            f"\n\n![ingest preview](data:image/png;base64,{png})\n\n"
            f"More: `mu0 view {dataset} --episode {ok.episode_id[:12]}` (3D), `--mp4 FILE` (video)"
        )
        return str(create_markdown_artifact(key="ingest-preview", markdown=markdown, description=f"preview of {dataset}"))
    except Exception as exc:  # noqa: BLE001 - a preview must never fail an ingest run
        get_run_logger().warning("no preview for %s: %s: %s", ok.episode_id[:12], type(exc).__name__, exc)
        return None


@flow(name="ingest", log_prints=True)
def ingest(
    source: str,
    dataset: str = "data/traces",
    config: IngestConfig = PRESETS["generic"],
    runner: Literal["ray", "sequential"] = "ray",
    ray_address: str | None = None,
    num_cpus: int | None = None,
    show_progress: bool = False,
    retries: int = 2,
) -> IngestReport:
    """Extract 3D point traces from every new episode in SOURCE into the Lance DATASET."""
    log = get_run_logger()
    run_id = str(flow_run.id or uuid.uuid4())
    try:
        for orphan in crash_orphaned_runs(dataset):
            log.warning("flow run %s died without ending; marked CRASHED", orphan)
    except Exception as exc:  # noqa: BLE001 - bookkeeping of older runs must not stop this one
        log.warning("could not check for dead runs on %s: %s: %s", dataset, type(exc).__name__, exc)
    tag = f"ingest-{run_id}"
    with run_lease(dataset, run_id):  # the next run on this dataset can tell if this process died
        todo, found = discover_new(source, dataset, config)
        log.info("%d episodes found, %d new", found, len(todo))
        work = make_runner(runner, ray_address, num_cpus, retries)
        results, seconds = extract(todo, dataset, config, work, show_progress) if todo else ([], 0.0)
        t0 = time.perf_counter()
        versions = commit_all(dataset, results, config, tag) if results else {}
        if versions:
            index(dataset)
        seconds += time.perf_counter() - t0
        if versions:
            preview(dataset, results)  # after the timed work: a look at the data, not part of making it
        report = summarize(results, dataset, tag, found, found - len(todo), seconds, versions)
        create_table_artifact(
            key="ingest-summary",
            table=[{"item": k, "value": v} for k, v in report.rows()],
            description=f"ingest {source} -> {dataset}",
        )
        for f in report.failures:
            log.warning("%s %s: %s", f.status, f.source_uri, f.error)
        return report
