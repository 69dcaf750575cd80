"""Ingest without Prefect: find new episodes, extract them with a runner, commit, index, report.

The `ingest` flow (flows/ingest.py) calls these same steps as its coarse tasks, so tests,
benchmarks and notebooks that call `ingest()` get exactly what a flow run writes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Protocol

from storage.dataset import existing_episode_ids
from storage.runs import run_lease
from storage.writer import commit_run, ensure_indexes, repair
from tasks.config import IngestConfig
from tasks.run.discover import discover
from tasks.run.episode import EpisodeResult
from tasks.run.report import Failure, IngestReport
from tasks.run.safety import check_source
from tasks.types import EpisodeSource


class Runner(Protocol):
    """Where episodes are extracted: `SequentialRunner` (this process) or `RayRunner` (a Ray cluster)."""

    def start(self, cfg: IngestConfig) -> None: ...

    def extract(
        self,
        sources: list[EpisodeSource],
        cfg: IngestConfig,
        root: str,
        on_result: Callable[[EpisodeResult], None] | None = None,
    ) -> list[EpisodeResult]: ...


def find_new(source: str, dataset: str, config: IngestConfig) -> tuple[list[EpisodeSource], int]:
    """Episodes in `source` the dataset does not hold yet (resume), and how many were found.

    Sources outside MU0_SOURCE_ROOTS (when set) are refused before anything is read.
    """
    check_source(source)
    found = discover(source, config)
    repair(dataset)  # a run that died half-committed is completed first, so resume trusts `episodes`
    have = existing_episode_ids(dataset)
    return [s for s in found if s.episode_id not in have], len(found)


def commit_results(dataset: str, results: list[EpisodeResult], config: IngestConfig, tag: str) -> dict[str, int]:
    """Commit a run's fragments (storage.writer.commit_run); returns the new version per table."""
    lengths = config.retarget.future_len, config.retarget.history_len
    return commit_run(dataset, {r.episode_id: r.fragments for r in results}, tag, *lengths)


def summarize(
    results: list[EpisodeResult], dataset: str, tag: str, discovered: int, skipped: int, seconds: float,
    versions: dict[str, int],
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


def ingest(
    source: str,
    dataset: str,
    config: IngestConfig,
    runner: Runner | None = None,
    tag: str | None = None,
    on_result: Callable[[EpisodeResult], None] | None = None,
) -> IngestReport:
    """Extract every new episode of `source` into `dataset`: the flow's work, in this process.

    `runner` defaults to the sequential one; pass `RayRunner(...)` to fan out over Ray.
    """
    from tasks.run.sequential import SequentialRunner

    runner = runner or SequentialRunner()
    tag = tag or f"ingest-{uuid.uuid4()}"
    with run_lease(dataset, tag):  # `mu0 check --repair` leaves a live run's uncommitted files alone
        todo, found = find_new(source, dataset, config)
        results: list[EpisodeResult] = []
        t0 = time.perf_counter()
        if todo:
            runner.start(config)
            t0 = time.perf_counter()
            results = runner.extract(todo, config, dataset, on_result)
        versions = commit_results(dataset, results, config, tag) if results else {}
        if versions:
            ensure_indexes(dataset)
    return summarize(results, dataset, tag, found, found - len(todo), time.perf_counter() - t0, versions)
