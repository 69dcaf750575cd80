"""The `ingest` flow: discover -> extract on Ray -> one commit per table -> indexes -> report.

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

from flows.report import Failure, IngestReport
from storage.dataset import existing_episode_ids
from storage.writer import commit, ensure_indexes
from tasks.config import PRESETS, IngestConfig
from tasks.run.discover import discover
from tasks.run.ray_runner import ensure_ray, extract_on_ray
from tasks.run.episode import TABLES, EpisodeResult, extract_sequential, schemas
from tasks.run.safety import check_source
from tasks.types import EpisodeSource


PROGRESS_INTERVAL_S = 1.0  # least time between two updates of the progress artifact
GPU_LIMIT = "gpu"  # global concurrency limit: each GPU-heavy run holds one slot (`mu0 serve --gpus N`)


def gpu_guard(config: IngestConfig):
    """Hold a slot of the global GPU limit while extracting with GPU backends (a no-op on CPU)."""
    return concurrency(GPU_LIMIT, occupy=1) if config.gpus_per_episode > 0 else contextlib.nullcontext()


@task(name="discover", cache_policy=NO_CACHE)
def discover_new(source: str, dataset: str, config: IngestConfig) -> tuple[list[EpisodeSource], int]:
    """Episodes in `source` that the dataset does not hold yet (resume), and how many were found.

    Sources outside MU0_SOURCE_ROOTS (when set) are refused before anything is read.
    """
    check_source(source)
    found = discover(source, config)
    have = existing_episode_ids(dataset)
    return [s for s in found if s.episode_id not in have], len(found)


@task(name="extract", cache_policy=NO_CACHE)
def extract(
    todo: list[EpisodeSource],
    dataset: str,
    config: IngestConfig,
    runner: str,
    ray_address: str | None,
    num_cpus: int | None,
    show_progress: bool,
) -> tuple[list[EpisodeResult], float]:
    """Run the stages for every episode: (results, seconds of work once Ray is up).

    Progress goes to the terminal and to a Prefect progress artifact.
    """
    if runner == "ray":
        ensure_ray(ray_address, num_cpus, config)
    with gpu_guard(config):
        return _extract(todo, dataset, config, runner, ray_address, num_cpus, show_progress)


def _extract(todo, dataset, config, runner, ray_address, num_cpus, show_progress) -> tuple[list[EpisodeResult], float]:
    """The body of `extract`, timed from here: Ray start-up and waiting for a GPU slot do not count."""
    t0 = time.perf_counter()
    artifact = create_progress_artifact(progress=0.0, description=f"episodes extracted into {dataset}")
    done = {"n": 0, "failed": 0, "reported": t0}
    with Progress(
        TextColumn("[bold]extract"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as bar:
        task_id = bar.add_task("extract", total=len(todo), note="")

        def on_result(res: EpisodeResult) -> None:
            done["n"] += 1
            done["failed"] += res.status == "failed"
            bar.update(task_id, advance=1, note=f"{done['failed']} failed" if done["failed"] else "")
            # One API call per episode competes with the workers for the driver's CPU: report at most
            # every PROGRESS_INTERVAL_S, and always the final 100%.
            now = time.perf_counter()
            if done["n"] == len(todo) or now - done["reported"] >= PROGRESS_INTERVAL_S:
                done["reported"] = now
                update_progress_artifact(artifact_id=artifact, progress=100.0 * done["n"] / max(1, len(todo)))

        if runner == "sequential":
            results = extract_sequential(todo, config, dataset, on_result)
        else:
            results = extract_on_ray(todo, config, dataset, address=ray_address, num_cpus=num_cpus, on_result=on_result)
    return results, time.perf_counter() - t0


@task(name="commit", cache_policy=NO_CACHE)
def commit_all(dataset: str, results: list[EpisodeResult], config: IngestConfig, tag: str) -> dict[str, int]:
    """One commit per table for the whole run, tagged so the run can be time-travelled to."""
    sch = schemas(config)
    versions = {}
    for name in TABLES:
        frags = [f for r in results for f in r.fragments.get(name, [])]
        version = commit(dataset, name, frags, sch[name], tag=tag)
        if version is not None:
            versions[name] = version
    return versions


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


def summarize(
    results: list[EpisodeResult], dataset: str, tag: str, discovered: int, skipped: int, seconds: float, versions
) -> IngestReport:
    report = IngestReport(run_tag=tag, dataset=dataset, discovered=discovered, skipped=skipped, seconds=seconds)
    stage_seconds: dict[str, float] = {}
    for r in results:
        setattr(report, r.status, getattr(report, r.status) + 1)
        report.frames += r.n_frames
        report.tracks += r.n_tracks
        report.samples += r.n_samples
        for k, v in r.timings.items():
            stage_seconds[k] = stage_seconds.get(k, 0.0) + v
        if r.status != "ok":
            report.failures.append(Failure(source_uri=r.source_uri, status=r.status, error=r.error_text))
    report.stage_seconds = stage_seconds
    report.versions = versions
    return report


@flow(name="ingest", log_prints=True)
def ingest(
    source: str,
    dataset: str = "data/traces",
    config: IngestConfig = PRESETS["generic"],
    runner: Literal["ray", "sequential"] = "ray",
    ray_address: str | None = None,
    num_cpus: int | None = None,
    show_progress: bool = False,
) -> IngestReport:
    """Extract 3D point traces from every new episode in SOURCE into the Lance DATASET."""
    log = get_run_logger()
    tag = f"ingest-{flow_run.id or uuid.uuid4()}"
    todo, found = discover_new(source, dataset, config)
    log.info("%d episodes found, %d new", found, len(todo))
    results, seconds = extract(todo, dataset, config, runner, ray_address, num_cpus, show_progress) if todo else ([], 0.0)
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
